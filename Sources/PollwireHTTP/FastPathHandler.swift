import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import PollwireCore
import PollwireEngine

/// The hot routes answered on the event loop, in the channel pipeline (HTTP/1.1 and every
/// HTTP/2 stream, after admission control): `GET`/`HEAD /v1/polls/{id}/results` and
/// `POST /v1/polls/{id}/votes`. No `Request`, no Swift task, no hop to the concurrency pool and
/// back, no router. The answers are the router's own: `ResultsController.single(pollID:...)`,
/// `VoteIntake`, `EdgeLimits`, `ResponsePolicy` and the compression rules.
///
/// A results read costs one route parse, one book lookup, the header fields and one write of the
/// snapshot's shared bytes. A vote is collected (up to `http.maxBodyBytes`), decoded, validated,
/// rate-limited and handed to `VoteIngestor.submit(_:answer:)`; the commit's answer hops back to
/// the event loop once.
///
/// It answers only what it can answer the way the router does. Anything else goes on to the
/// router: an unknown poll, a refused origin, tallies still loading, a query string, a compressed
/// `HEAD`, a vote that is not `application/json` or larger than the limit. While a request it
/// passed on is still being answered it passes the next ones on too; while a vote of its own
/// waits for its commit it holds what follows. So pipelined responses keep their order.
/// Event loop only (NIO handlers are).
final class FastPathHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What the fast path shares with the router.
    struct Dependencies: Sendable {
        let book: TallyBook
        let results: ResultsController
        let intake: VoteIntake
        let ingestor: VoteIngestor
        let limits: EdgeLimits
        let policy: ResponsePolicy
        let settings: PollwireSettings
        let metrics: RouteMetricsMiddleware.Instruments
    }

    static let resultsTemplate = "/v1/polls/{id}/results"
    static let votesTemplate = "/v1/polls/{id}/votes"

    enum State {
        case idle
        /// A results read answered here, written at the request's end.
        case answering(HTTPResponse, ByteBuffer?, method: String, started: NIODeadline, closing: Bool)
        /// A vote's body arriving.
        case collecting(HTTPRequest, poll: String, body: [ByteBuffer], bytes: Int, started: NIODeadline)
        /// The request goes to the router: its parts pass on.
        case passing
        /// A vote of ours waits for its commit: what arrives meanwhile is held.
        case committing
    }

    private let dependencies: Dependencies
    private var state = State.idle
    /// Requests passed on to the router whose response has not ended.
    private var routed = 0
    /// Parts that arrived while a vote waited for its commit, in order.
    private var held: [HTTPRequestPart] = []
    private var context: ChannelHandlerContext?
    /// The server began shutting down while a request of ours was under way: the event goes on
    /// once it is answered, so the connection is not closed before its answer.
    private var quiesceHeld = false

    init(dependencies: Dependencies) {
        self.dependencies = dependencies
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.process(self.unwrapInboundIn(data), context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, !self.isIdle {
            self.quiesceHeld = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private var isIdle: Bool {
        switch self.state {
        case .idle, .passing: true
        case .answering, .collecting, .committing: false
        }
    }

    /// After an answer of ours: a shutdown that waited for it goes on.
    private func releaseQuiesce(context: ChannelHandlerContext) {
        guard self.quiesceHeld, self.isIdle else { return }
        self.quiesceHeld = false
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), self.routed > 0 { self.routed -= 1 }
        context.write(data, promise: promise)
    }

    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (self.state, part) {
        case (.committing, _):
            self.held.append(part)
        case (.idle, .head(let request)):
            if self.routed == 0, let (response, body) = self.results(request) {
                self.state = .answering(
                    response, body, method: request.method.rawValue, started: .now(), closing: Self.closes(request))
            } else if self.routed == 0, let poll = self.votable(request) {
                self.state = .collecting(request, poll: poll, body: [], bytes: 0, started: .now())
            } else {
                self.pass(.head(request), context: context)
            }
        case (.answering, .body):
            break
        case (.answering(let response, let body, let method, let started, let closing), .end):
            self.state = .idle
            self.write(response, body, closing: closing, context: context)
            self.record(Self.resultsTemplate, method: method, status: response.status.code, since: started)
            self.releaseQuiesce(context: context)
        case (.collecting(let request, let poll, var body, var bytes, let started), .body(let part)):
            body.append(part)
            bytes += part.readableBytes
            guard bytes <= self.dependencies.settings.maxBodyBytes else {
                // The router answers 413 (and counts the address first, as it always does).
                self.state = .idle
                self.pass(.head(request), context: context)
                for part in body { context.fireChannelRead(self.wrapInboundOut(.body(part))) }
                self.releaseQuiesce(context: context)
                return
            }
            self.state = .collecting(request, poll: poll, body: body, bytes: bytes, started: started)
        case (.collecting(let request, let poll, let body, _, let started), .end):
            self.vote(request, poll: poll, body: body, started: started, context: context)
        case (.passing, .end):
            self.state = .idle
            context.fireChannelRead(self.wrapInboundOut(part))
        case (.passing, _), (.idle, _), (.collecting, .head), (.answering, .head):
            context.fireChannelRead(self.wrapInboundOut(part))
        }
    }

    /// Hands a request to the router; its body and end follow it.
    private func pass(_ head: HTTPRequestPart, context: ChannelHandlerContext) {
        self.routed += 1
        self.state = .passing
        context.fireChannelRead(self.wrapInboundOut(head))
    }

    // MARK: Results

    /// The response to a results read if the fast path gives it, nil to let the router answer.
    func results(_ request: HTTPRequest) -> (HTTPResponse, ByteBuffer?)? {
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
            headers[.contentType] = "application/json; charset=utf-8"
            var bytes = answer.snapshot.body
            let minimum = self.dependencies.settings.compression.minimumBytes
            if minimum > 0 {
                headers.append(HTTPField(name: .vary, value: "Accept-Encoding"))
                if bytes.readableBytes >= minimum,
                    let coding = CompressionMiddleware.preferred(fields[values: .acceptEncoding])
                {
                    guard request.method == .get,
                        let packed = try? self.dependencies.book.compressed(
                            answer.snapshot, coding: coding.rawValue,
                            make: { try CompressionMiddleware.compress(answer.snapshot.body, coding: coding) })
                    else {
                        return nil
                    }
                    bytes = packed
                    headers[.contentEncoding] = coding.rawValue
                }
            }
            headers[.contentLength] = String(bytes.readableBytes)
            body = request.method == .get ? bytes : nil
        }
        self.dependencies.policy.finish(&headers, origin: origin, route: .results(poll: poll))
        headers[.date] = HTTPDate.now
        return (HTTPResponse(status: answer.notModified ? .notModified : .ok, headerFields: headers), body)
    }

    // MARK: Votes

    /// The poll id of a vote the fast path takes: a JSON body within the limit, tallies loaded.
    func votable(_ request: HTTPRequest) -> String? {
        guard request.method == .post, let path = request.path, !path.utf8.contains(UInt8(ascii: "?")),
            case .vote(let poll) = Route(request), self.dependencies.book.isLoaded,
            request.headerFields[.contentType]?.lowercased().hasPrefix("application/json") == true,
            request.headerFields[.expect] == nil
        else { return nil }
        if let length = request.headerFields[.contentLength] {
            guard let length = Int(length), length <= self.dependencies.settings.maxBodyBytes else { return nil }
        }
        return String(poll)
    }

    /// The way of a vote, as `VotesController.vote` takes it: origin, address limit, decode,
    /// validate, voter limit, submit; answered after the commit.
    private func vote(
        _ request: HTTPRequest, poll id: String, body: [ByteBuffer], started: NIODeadline,
        context: ChannelHandlerContext
    ) {
        let dependencies = self.dependencies
        let fields = request.headerFields
        let poll = dependencies.book.poll(id)
        if let origin = fields[.origin], let poll, !OriginPolicy.allows(origin, poll: poll) {
            // The router answers 403 origin_not_allowed.
            self.pass(.head(request), context: context)
            for part in body { context.fireChannelRead(self.wrapInboundOut(.body(part))) }
            context.fireChannelRead(self.wrapInboundOut(.end(nil)))
            self.state = .idle
            self.releaseQuiesce(context: context)
            return
        }
        let checked: VoteIntake.Checked
        do throws(APIError) {
            try dependencies.limits.voteFromAddress(
                dependencies.limits.clientAddress(forwardedFor: fields[.xForwardedFor], channel: context.channel))
            let decoded = try Self.decode(body)
            checked = try dependencies.intake.command(
                pollID: id, poll: poll, voter: decoded.voter, device: decoded.device ?? fields[.pollwireDevice],
                idempotencyKey: fields[.idempotencyKey], answers: decoded.answers)
            if let voter = checked.command.voter {
                try dependencies.limits.voteByVoter(voter, poll: id, limit: poll?.settings.voterLimit)
            }
        } catch {
            self.state = .idle
            self.answer(error: error, request: request, started: started, context: context)
            self.releaseQuiesce(context: context)
            return
        }
        self.state = .committing
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        dependencies.ingestor.submit([checked.command]) { result in
            eventLoop.execute {
                let handler = loopBound.value
                guard let context = handler.context else { return }
                handler.committed(result, checked: checked, request: request, started: started, context: context)
            }
        }
    }

    private func committed(
        _ result: Result<[VoteOutcome], IngestError>, checked: VoteIntake.Checked, request: HTTPRequest,
        started: NIODeadline, context: ChannelHandlerContext
    ) {
        self.state = .idle
        switch result {
        case .success(let outcomes):
            let (status, text) = self.dependencies.intake.answer(to: outcomes[0], receipt: checked.receipt)
            var fields: HTTPFields = [.cacheControl: "no-store"]
            if case .accepted(_, replayed: true) = outcomes[0] { fields[.idempotentReplayed] = "true" }
            self.answerJSON(status, text, fields: fields, request: request, started: started, context: context)
        case .failure(let error):
            let apiError = VoteIntake.unavailable(error, retryAfter: self.dependencies.settings.retryAfterSeconds)
            self.answer(error: apiError, request: request, started: started, context: context)
        }
        // What arrived while the vote waited, in order. Outside a read, so the read's end is
        // signalled too: the router's async channel hands on what it buffered only then.
        if !self.held.isEmpty {
            let held = self.held
            self.held = []
            for part in held { self.process(part, context: context) }
            context.fireChannelReadComplete()
        }
        self.releaseQuiesce(context: context)
    }

    static func decode(_ body: [ByteBuffer]) throws(APIError) -> VoteRequest {
        var data = Data(capacity: body.reduce(0) { $0 + $1.readableBytes })
        for part in body { data.append(contentsOf: part.readableBytesView) }
        do {
            return try PollwireJSON.shared.decode(VoteRequest.self, from: data)
        } catch let error as DecodingError {
            throw APIError.decoding(error)
        } catch let error as ValidationError {
            throw APIError.invalid(error)
        } catch {
            throw APIError(.badRequest, .invalidJSON, "the body is not valid JSON")
        }
    }

    private func answer(error: APIError, request: HTTPRequest, started: NIODeadline, context: ChannelHandlerContext) {
        var fields: HTTPFields = [.cacheControl: "no-store"]
        if let retryAfter = error.retryAfter { fields[.retryAfter] = String(retryAfter) }
        fields.append(contentsOf: error.headers)
        self.answerJSON(error.status, error.json, fields: fields, request: request, started: started, context: context)
    }

    /// A JSON answer as the router's middleware would finish it: type, compression rules,
    /// length, security headers and CORS, date; then the route's metrics.
    private func answerJSON(
        _ status: HTTPResponse.Status, _ text: String, fields: HTTPFields, request: HTTPRequest, started: NIODeadline,
        context: ChannelHandlerContext
    ) {
        var headers = fields
        headers[.contentType] = "application/json; charset=utf-8"
        var body = context.channel.allocator.buffer(string: text)
        let minimum = self.dependencies.settings.compression.minimumBytes
        if minimum > 0 {
            headers.append(HTTPField(name: .vary, value: "Accept-Encoding"))
            if body.readableBytes >= minimum,
                let coding = CompressionMiddleware.preferred(request.headerFields[values: .acceptEncoding]),
                let packed = try? CompressionMiddleware.compress(body, coding: coding)
            {
                body = packed
                headers[.contentEncoding] = coding.rawValue
            }
        }
        headers[.contentLength] = String(body.readableBytes)
        self.dependencies.policy.finish(&headers, origin: request.headerFields[.origin], route: Route(request))
        headers[.date] = HTTPDate.now
        self.write(
            HTTPResponse(status: status, headerFields: headers), body, closing: Self.closes(request), context: context)
        self.record(Self.votesTemplate, method: "POST", status: status.code, since: started)
    }

    // MARK: Writing

    /// Writes a whole response; closes the connection after it when the client asked to.
    private func write(
        _ response: HTTPResponse, _ body: ByteBuffer?, closing: Bool, context: ChannelHandlerContext
    ) {
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

    private func record(_ route: String, method: String, status: Int, since started: NIODeadline) {
        self.dependencies.metrics.record(
            route: route, method: method, status: status, nanoseconds: (NIODeadline.now() - started).nanoseconds)
    }
}
