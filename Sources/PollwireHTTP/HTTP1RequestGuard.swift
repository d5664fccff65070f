import HTTPTypes
import NIOCore
import NIOHTTP1

/// The first handler after HTTP/1's codec, from a connection's first byte: it bounds how long a
/// request may take to arrive, head included, and answers a request the decoder cannot parse.
///
/// - A request must arrive whole (head and body) within `timeout` of its first byte: a client
///   that trickles header lines (slowloris) or its body is answered 408 and closed. The clock
///   starts at the first read that brings part of a request; a read that ends with the request
///   whole costs one clock read and no timer.
/// - A parse error (a bad `Content-Length`, `Content-Length` beside `Transfer-Encoding`, a NUL in
///   a header, a raw space or `\xff` in the target, a head over the decoder's limit, TLS on the
///   plain port) is answered 400, or 431 for a head too large, in the JSON error shape, and the
///   connection is closed after it; when a response has already begun, it is closed at once.
///
/// Works on NIOHTTP1's parts (before the HTTPTypes conversion) as NIO's own
/// `HTTPServerProtocolErrorHandler` does, so it also sees errors of the first request, before
/// anyone decided who serves the connection. Removed with the HTTP handlers on a WebSocket
/// upgrade. Must be used on the channel's event loop only (NIO handlers are).
final class HTTP1RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var state: RequestGuardState
    private let responses: ProtocolErrorResponses
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, responses: ProtocolErrorResponses) {
        self.state = RequestGuardState(timeout: timeout)
        self.responses = responses
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head: self.perform(self.state.readHead(now: .now()), context: context)
        case .body: self.state.readBody()
        case .end: self.perform(self.state.readEnd(), context: context)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.perform(self.state.readComplete(now: .now()), context: context)
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(let head) where !(100..<200).contains(head.status.code) || head.status == .switchingProtocols:
            self.state.responseBegan()
        case .end: self.state.responseEnded()
        default: break
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // Handled here: the request cannot be read, so nobody after us gets a part of it.
        let status: HTTPResponseStatus = error == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        self.perform(self.state.parseFailed(status), context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelDeadline()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelDeadline()
        context.fireChannelInactive()
    }

    private func perform(_ action: RequestGuardState.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .startDeadline(let at):
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.deadline = context.eventLoop.scheduleTask(deadline: at) {
                let (handler, context) = loopBound.value
                handler.deadline = nil
                handler.perform(handler.state.deadlinePassed(), context: context)
            }
        case .cancelDeadline:
            self.cancelDeadline()
        case .answerAndClose(let status):
            self.cancelDeadline()
            let (head, body) = self.responses.response(status)
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        case .close:
            self.cancelDeadline()
            context.close(promise: nil)
        }
    }

    private func cancelDeadline() {
        self.deadline?.cancel()
        self.deadline = nil
    }
}

/// What `HTTP1RequestGuard` knows of a connection, and what it does next: a plain value with no
/// I/O and no clock of its own, so every path is tested without a socket.
struct RequestGuardState {
    enum Action: Equatable {
        case none
        /// Schedule the request's deadline at this time.
        case startDeadline(NIODeadline)
        case cancelDeadline
        /// Answer with this status (the JSON error), then close.
        case answerAndClose(HTTPResponseStatus)
        case close
    }

    let timeout: TimeAmount
    /// When the first byte of the request being read arrived; nil between requests.
    private(set) var readingSince: NIODeadline?
    /// Whether this read delivered a part of a request (a read that delivered none brought bytes the
    /// decoder keeps: the start of a head).
    private var readPartThisRead = false
    private var deadlineScheduled = false
    /// A response has begun and not ended: nothing else may be written before its end.
    private(set) var responding = false
    /// A parse error or the deadline ended the connection: nothing more to do.
    private(set) var finished = false

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    mutating func readHead(now: NIODeadline) -> Action {
        self.readPartThisRead = true
        if self.readingSince == nil { self.readingSince = now }
        return .none
    }

    mutating func readBody() {
        self.readPartThisRead = true
    }

    mutating func readEnd() -> Action {
        self.readPartThisRead = true
        self.readingSince = nil
        guard self.deadlineScheduled else { return .none }
        self.deadlineScheduled = false
        return .cancelDeadline
    }

    /// A read ended. Bytes that delivered no part are the start of a head the decoder keeps:
    /// the request's clock starts. A request still incomplete gets its timer (once).
    mutating func readComplete(now: NIODeadline) -> Action {
        defer { self.readPartThisRead = false }
        guard !self.finished else { return .none }
        if self.readingSince == nil, !self.readPartThisRead { self.readingSince = now }
        guard let since = self.readingSince, !self.deadlineScheduled else { return .none }
        self.deadlineScheduled = true
        return .startDeadline(since + self.timeout)
    }

    mutating func deadlinePassed() -> Action {
        self.deadlineScheduled = false
        guard !self.finished, self.readingSince != nil else { return .none }
        self.finished = true
        return self.responding ? .close : .answerAndClose(.requestTimeout)
    }

    mutating func parseFailed(_ status: HTTPResponseStatus) -> Action {
        guard !self.finished else { return .none }
        self.finished = true
        self.deadlineScheduled = false
        return self.responding ? .close : .answerAndClose(status)
    }

    mutating func responseBegan() {
        self.responding = true
    }

    mutating func responseEnded() {
        self.responding = false
    }
}

/// The JSON error responses `HTTP1RequestGuard` sends, with the security headers every
/// response carries and `Connection: close`; made once per server.
struct ProtocolErrorResponses: Sendable {
    private let badRequest: (HTTPResponseHead, ByteBuffer)
    private let headTooLarge: (HTTPResponseHead, ByteBuffer)
    private let timeout: (HTTPResponseHead, ByteBuffer)

    init(securityHeaders: [(String, String)]) {
        func make(_ error: APIError) -> (HTTPResponseHead, ByteBuffer) {
            let body = ByteBuffer(string: error.json)
            var headers = HTTPHeaders([
                ("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
                ("Content-Length", String(body.readableBytes)), ("Connection", "close"),
            ])
            headers.add(contentsOf: securityHeaders)
            return (
                HTTPResponseHead(
                    version: .http1_1, status: HTTPResponseStatus(statusCode: Int(error.status.code)),
                    headers: headers), body
            )
        }
        self.badRequest = make(APIError(.badRequest, .badRequest, "the request is not valid HTTP/1.1"))
        self.headTooLarge = make(
            APIError(
                .requestHeaderFieldsTooLarge, .headerTooLarge, "the request's head is larger than the server reads"))
        self.timeout = make(
            APIError(.requestTimeout, .requestTimeout, "the request did not arrive within the server's read timeout"))
    }

    func response(_ status: HTTPResponseStatus) -> (HTTPResponseHead, ByteBuffer) {
        switch status {
        case .requestHeaderFieldsTooLarge: self.headTooLarge
        case .requestTimeout: self.timeout
        default: self.badRequest
        }
    }
}
