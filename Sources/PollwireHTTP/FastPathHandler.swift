import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTPTypes
import PollwireCore
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
///
/// `POST /v1/polls/{id}/votes` of a loaded poll, declared `application/json` with a
/// `Content-Length` within `maxBodyBytes`, is answered here too: the body is collected, checked
/// and decoded by the router's own steps (`VotesController.admit`, `check`, `answer`), and the
/// command goes to the ingest queue with a callback, not a Swift task; the answer is written when
/// the commit is durable. While a vote waits for its commit, the connection reads nothing more
/// (its `read` is held) and parts already read wait here, so responses keep their order. Any other
/// vote (unknown poll, chunked, too large, not JSON, `Expect`) goes to the router, which makes
/// its error.
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
        /// Single votes on the event loop; nil leaves them to the router.
        var votes: VotesController? = nil
    }

    static let routeTemplate = "/v1/polls/{id}/results"
    static let voteTemplate = "/v1/polls/{id}/votes"

    /// A vote whose body is arriving.
    struct Collecting {
        let request: HTTPRequest
        let pollID: String
        let poll: Poll
        var body: ByteBuffer?
        let started: NIODeadline
    }

    private let dependencies: Dependencies
    /// Requests passed on to the router whose response has not ended.
    private var routed = 0
    /// The request answered here, written at its end.
    private var answering:
        (response: HTTPResponse, body: ByteBuffer?, method: String, started: NIODeadline, closing: Bool)?
    /// The vote whose body is arriving.
    private var collecting: Collecting?
    /// A vote is waiting for its commit: what arrives meanwhile is held, reads too.
    private var awaiting = false
    private var held: [HTTPRequestPart] = []
    private var readHeld = false
    /// False once the handler left the pipeline: a late commit answers no one.
    private var attached = true

    init(dependencies: Dependencies) {
        self.dependencies = dependencies
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.attached = false
    }

    func read(context: ChannelHandlerContext) {
        if self.awaiting {
            self.readHeld = true
            return
        }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        if self.awaiting {
            self.held.append(part)
            return
        }
        self.read(part, data: data, context: context)
    }

    private func read(_ part: HTTPRequestPart, data: NIOAny, context: ChannelHandlerContext) {
        switch part {
        case .head(let request):
            if self.routed == 0, let (response, body) = self.answer(request) {
                self.answering = (response, body, request.method.rawValue, .now(), Self.closes(request))
                return
            }
            if self.routed == 0, let vote = self.voteToCollect(request) {
                self.collecting = vote
                return
            }
            self.routed += 1
            context.fireChannelRead(data)
        case .body(let bytes):
            if var collecting = self.collecting {
                if collecting.body == nil {
                    collecting.body = bytes
                } else {
                    var bytes = bytes
                    collecting.body?.writeBuffer(&bytes)
                }
                self.collecting = collecting
            } else if self.answering == nil {
                context.fireChannelRead(data)
            }
        case .end:
            if let collecting = self.collecting {
                self.collecting = nil
                self.vote(collecting, context: context)
                return
            }
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

    // MARK: Votes

    /// The vote `request` starts if the fast path takes it; nil to let the router answer.
    private func voteToCollect(_ request: HTTPRequest) -> Collecting? {
        guard request.method == .post, let votes = self.dependencies.votes, let path = request.path,
            !path.utf8.contains(UInt8(ascii: "?")), case .vote(let poll) = Route(request),
            self.dependencies.book.isLoaded
        else { return nil }
        let fields = request.headerFields
        guard fields[.expect] == nil, fields[.transferEncoding] == nil,
            let length = fields[.contentLength].flatMap(Int.init), length <= votes.settings.maxBodyBytes,
            let type = fields[.contentType], type.lowercased().hasPrefix("application/json")
        else { return nil }
        let pollID = String(poll)
        guard let definition = self.dependencies.book.poll(pollID) else { return nil }
        return Collecting(request: request, pollID: pollID, poll: definition, body: nil, started: .now())
    }

    /// Checks and decodes a whole vote and submits it; the answer is written after the commit,
    /// or at once for a refusal.
    private func vote(_ vote: Collecting, context: ChannelHandlerContext) {
        guard let votes = self.dependencies.votes else { return }
        let fields = vote.request.headerFields
        let checked: VoteIntake.Checked
        do throws(APIError) {
            try votes.admit(
                poll: vote.poll, origin: fields[.origin],
                address: votes.limits.clientAddress(fields, channel: context.channel))
            let body = try Request.decodeJSON(
                VoteBody.self, from: vote.body ?? ByteBuffer(), fast: BallotJSON.vote)
            checked = try votes.check(
                pollID: vote.pollID, poll: vote.poll, body: body, device: fields[.pollwireDevice],
                idempotencyKey: fields[.idempotencyKey])
        } catch {
            self.respond(error, to: vote, context: context)
            return
        }
        self.awaiting = true
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: eventLoop)
        let receipt = checked.receipt
        votes.ingestor.submit([checked.command]) { result in
            if eventLoop.inEventLoop {
                bound.value.0.voted(result, receipt: receipt, vote: vote, context: bound.value.1)
            } else {
                eventLoop.execute { bound.value.0.voted(result, receipt: receipt, vote: vote, context: bound.value.1) }
            }
        }
    }

    /// Writes a vote's answer once its commit is decided, then reads on.
    private func voted(
        _ result: Result<[VoteOutcome], IngestError>, receipt: String?, vote: Collecting,
        context: ChannelHandlerContext
    ) {
        self.awaiting = false
        guard self.attached, let votes = self.dependencies.votes else { return }
        switch result {
        case .success(let outcomes):
            let (status, text, headers) = votes.answer(outcomes[0], receipt: receipt)
            self.respond(status, ByteBuffer(string: text), headers: headers, to: vote, context: context)
        case .failure(let error):
            self.respond(
                VoteIntake.unavailable(error, retryAfter: votes.settings.retryAfterSeconds), to: vote,
                context: context)
        }
        // What arrived meanwhile, in order, until another vote waits again. Outside a read the
        // handlers after this one (the async channel's) deliver on `channelReadComplete` only.
        let replaying = !self.held.isEmpty
        while !self.awaiting, !self.held.isEmpty, self.attached {
            let part = self.held.removeFirst()
            self.read(part, data: self.wrapInboundOut(part), context: context)
        }
        if replaying, self.attached { context.fireChannelReadComplete() }
        if !self.awaiting, self.readHeld {
            self.readHeld = false
            context.read()
        }
    }

    private func respond(_ error: APIError, to vote: Collecting, context: ChannelHandlerContext) {
        var headers: HTTPFields = [.cacheControl: "no-store"]
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        headers.append(contentsOf: error.headers)
        self.respond(error.status, ByteBuffer(string: error.json), headers: headers, to: vote, context: context)
    }

    /// A vote's JSON answer with what the router's middleware adds: compression by the same rule,
    /// the response policy, `Date`, and the route's metrics.
    private func respond(
        _ status: HTTPResponse.Status, _ body: ByteBuffer, headers: HTTPFields, to vote: Collecting,
        context: ChannelHandlerContext
    ) {
        var headers = headers
        var bytes = body
        var coding: CompressionMiddleware.Coding?
        if self.dependencies.compressionMinimum > 0, body.readableBytes >= self.dependencies.compressionMinimum,
            let preferred = CompressionMiddleware.preferred(vote.request.headerFields[values: .acceptEncoding]),
            let packed = try? CompressionMiddleware.compress(body, coding: preferred)
        {
            coding = preferred
            bytes = packed
        }
        self.dependencies.describe(&headers, bytes: bytes.readableBytes, coding: coding?.rawValue)
        let origin = vote.request.headerFields[.origin]
        self.dependencies.policy.finish(&headers, origin: origin, route: .vote(poll: Substring(vote.pollID)))
        headers[.date] = HTTPDate.now
        self.write(
            HTTPResponse(status: status, headerFields: headers), bytes, closing: Self.closes(vote.request),
            context: context)
        self.dependencies.metrics.record(
            route: Self.voteTemplate, method: "POST", status: status.code,
            nanoseconds: (NIODeadline.now() - vote.started).nanoseconds)
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
