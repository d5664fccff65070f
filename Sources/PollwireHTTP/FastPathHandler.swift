import HTTPTypes
import NIOCore
import NIOHTTPTypes
import PollwireEngine

/// `GET`/`HEAD /v1/polls/{id}/results` answered on the event loop, in the channel pipeline
/// (HTTP/1.1 and every HTTP/2 stream, after admission control): no `Request`, no Swift task, no
/// hop to the concurrency pool and back, no router. The answer is the router's own
/// (`ResultsController.single(pollID:...)`, `ResponsePolicy`, the compression rules), from the
/// snapshot cached per version: a read costs one route parse, one book lookup, the header fields
/// and one write of shared bytes (compressed forms are kept by the book, made once per version).
///
/// It answers only what it can answer the same way: a 200 or 304 of a loaded poll. Anything else
/// (an unknown poll, a refused origin, tallies still loading, a query string, a compressed `HEAD`)
/// goes on to the router. While a request it passed on is still being answered, it passes the
/// next ones on too, so pipelined responses keep their order. Event loop only (NIO handlers are).
final class FastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What the fast path shares with the router.
    struct Dependencies: Sendable {
        let book: TallyBook
        let results: ResultsController
        let policy: ResponsePolicy
        /// `compression.minimumBytes`; 0 turns compression off.
        let compressionMinimum: Int
        let metrics: RouteMetricsMiddleware.Instruments
    }

    static let routeTemplate = "/v1/polls/{id}/results"

    private let dependencies: Dependencies
    /// Requests passed on to the router whose response has not ended.
    private var routed = 0
    /// The request answered here, written at its end.
    private var answering:
        (response: HTTPResponse, body: ByteBuffer?, method: String, started: NIODeadline, closing: Bool)?

    init(dependencies: Dependencies) {
        self.dependencies = dependencies
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            if self.routed == 0, let (response, body) = self.answer(request) {
                self.answering = (response, body, request.method.rawValue, .now(), Self.closes(request))
                return
            }
            self.routed += 1
            context.fireChannelRead(data)
        case .body:
            if self.answering == nil { context.fireChannelRead(data) }
        case .end:
            guard let answering = self.answering else {
                context.fireChannelRead(data)
                return
            }
            self.answering = nil
            self.write(answering.response, answering.body, closing: answering.closing, context: context)
            self.dependencies.metrics.record(
                route: Self.routeTemplate, method: answering.method, status: answering.response.status.code,
                nanoseconds: (NIODeadline.now() - answering.started).nanoseconds)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), self.routed > 0 { self.routed -= 1 }
        context.write(data, promise: promise)
    }

    /// The response to `request` if the fast path gives it, nil to let the router answer.
    func answer(_ request: HTTPRequest) -> (HTTPResponse, ByteBuffer?)? {
        guard request.method == .get || request.method == .head, let path = request.path,
            !path.utf8.contains(UInt8(ascii: "?")),
            case .results(let poll) = Route(request), self.dependencies.book.isLoaded
        else { return nil }
        let fields = request.headerFields
        let origin = fields[.origin]
        guard
            let answer = try? self.dependencies.results.single(
                pollID: String(poll), origin: origin, receipt: fields[.pollwireReceipt],
                ifNoneMatch: fields[.ifNoneMatch])
        else { return nil }
        var headers = answer.fields
        var body: ByteBuffer?
        if !answer.notModified {
            var bytes = answer.snapshot.body
            var coding: CompressionMiddleware.Coding?
            if self.dependencies.compressionMinimum > 0, bytes.readableBytes >= self.dependencies.compressionMinimum {
                coding = CompressionMiddleware.preferred(fields[values: .acceptEncoding])
            }
            if let coding {
                guard request.method == .get,
                    let packed = try? self.dependencies.book.derived(
                        answer.snapshot, form: coding.rawValue,
                        make: { try CompressionMiddleware.compress(answer.snapshot.body, coding: coding) })
                else { return nil }
                bytes = packed
            }
            self.dependencies.describe(&headers, bytes: bytes.readableBytes, coding: coding?.rawValue)
            body = request.method == .get ? bytes : nil
        }
        self.dependencies.policy.finish(&headers, origin: origin, route: .results(poll: poll))
        headers[.date] = HTTPDate.now
        return (HTTPResponse(status: answer.notModified ? .notModified : .ok, headerFields: headers), body)
    }

    /// Writes a whole response; closes the connection after it when the client asked to.
    private func write(_ response: HTTPResponse, _ body: ByteBuffer?, closing: Bool, context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(.head(response)), promise: nil)
        if let body { context.write(self.wrapOutboundOut(.body(body)), promise: nil) }
        guard closing else {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }

    /// Whether the client asked to close the connection after this request.
    static func closes(_ request: HTTPRequest) -> Bool {
        request.headerFields[.connection]?.lowercased().contains("close") == true
    }
}

extension FastPathHandler.Dependencies {
    /// The body's headers on a 200: type, `Vary: Accept-Encoding` (when compression is on),
    /// `Content-Encoding` and length.
    func describe(_ headers: inout HTTPFields, bytes: Int, coding: String?) {
        headers[.contentType] = "application/json; charset=utf-8"
        if self.compressionMinimum > 0 { headers.append(HTTPField(name: .vary, value: "Accept-Encoding")) }
        if let coding { headers[.contentEncoding] = coding }
        headers[.contentLength] = String(bytes)
    }

    /// A plain `GET` of `target` answered at the bytes (`ByteFrontHandler`): the 200's head up to
    /// its `Date` line, made from the snapshot it answers with and kept by the book beside it, the
    /// snapshot's body, and when the answer began. Nil for anything but a loaded poll's results
    /// (the router answers those, 404 included).
    func wireAnswer(target: String) -> (head: ByteBuffer, body: ByteBuffer, started: NIODeadline)? {
        let started = NIODeadline.now()
        guard self.book.isLoaded, !target.utf8.contains(UInt8(ascii: "?")),
            case .results(let poll) = Route(method: .get, path: Substring(target)),
            let (snapshot, definition, privately) = try? self.results.snapshot(
                of: String(poll), origin: nil, receipt: nil)
        else { return nil }
        let head = self.book.derived(snapshot, form: "http/1.1") {
            var headers = self.results.fields(snapshot, poll: definition, privately: privately)
            self.describe(&headers, bytes: snapshot.body.readableBytes, coding: nil)
            self.policy.finish(&headers, origin: nil, route: .results(poll: poll))
            return HTTP1Head.encode(.ok, headers)
        }
        return (head, snapshot.body, started)
    }
}
