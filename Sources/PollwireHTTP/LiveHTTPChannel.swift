import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import PollwireEngine

/// Hummingbird's HTTP/1 child channel plus one WebSocket route, `GET /v1/live`, whose upgraded
/// connection is served by a plain SwiftNIO handler (`LiveSocketHandler`) instead of a Swift
/// task: the server's connection task returns as soon as the upgrade is done.
///
/// Modelled on hummingbird-websocket's `HTTP1WebSocketUpgradeChannel`; the difference is what
/// the upgrade installs. Every other request goes to the router as usual.
struct LiveHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case webSocket
        /// Plain HTTP: what the first request turns out to be is known when it arrives.
        case notUpgraded(EventLoopFuture<FirstRequest>)
        case failedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    /// What a plain HTTP connection became at its first request.
    enum FirstRequest: Sendable {
        /// An ordinary request: Hummingbird serves the connection.
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A live event stream: `LiveEventsHandler` serves it; no task needed.
        case liveEvents
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let dependencies: LiveDependencies
    /// Largest WebSocket frame a client may send.
    let maxFrameSize: Int
    /// Whether the connection is inside TLS (Hummingbird's `Request` reads it from the codec).
    let tls: Bool
    /// Whether permessage-deflate is accepted when a client offers it.
    let webSocketDeflate: Bool
    /// How long a request may take to arrive, head and body, from its first byte.
    let readTimeout: TimeAmount
    /// The answers to requests that cannot be parsed or do not arrive in time.
    let protocolErrors: ProtocolErrorResponses
    /// Admission control: `ByteFrontHandler` before the decoder, `AdmissionHandler` after it.
    let admission: Admission
    /// What `ByteFrontHandler` answers plain results reads from.
    let reads: FastPathHandler.Dependencies

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            // Whether the 101 accepted permessage-deflate: decided once, used by the handler.
            let deflate = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            // Whether the viewer asked for compact frames (`format=counts`).
            let compact = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let dependencies = self.dependencies
            let requestGuard = NIOLoopBound(
                HTTP1RequestGuard(timeout: self.readTimeout, responses: self.protocolErrors),
                eventLoop: channel.eventLoop)
            let ledger = NIOLoopBound(RequestLedger(), eventLoop: channel.eventLoop)
            let byteFront = NIOLoopBound(
                ByteFrontHandler(admission: self.admission, ledger: ledger.value, reads: self.reads),
                eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: self.maxFrameSize,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    let format = Self.format(head.uri)
                    let allowed =
                        head.method == .GET && Route(method: .get, path: Substring(head.uri)) == .liveSocket
                        && dependencies.book.isLoaded && format != nil
                    guard allowed else { return channel.eventLoop.makeSucceededFuture(nil) }
                    compact.value = format == .counts
                    // WebSocket frames follow: the guard reads HTTP parts only, and must be gone
                    // before the upgrade removes the decoder (which forwards the bytes after the
                    // request as they are).
                    channel.pipeline.syncOperations.removeHandler(requestGuard.value, promise: nil)
                    channel.pipeline.syncOperations.removeHandler(byteFront.value, promise: nil)
                    var headers = Self.upgradeHeaders(dependencies)
                    if self.webSocketDeflate, PerMessageDeflate.isOffered(head.headers) {
                        headers.add(name: "Sec-WebSocket-Extensions", value: PerMessageDeflate.accepted)
                        deflate.value = true
                    }
                    return channel.eventLoop.makeSucceededFuture(headers)
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            LiveSocketHandler(
                                dependencies: dependencies, eventLoop: channel.eventLoop,
                                origin: head.headers.first(name: "origin"),
                                deflate: deflate.value, compact: compact.value))
                        return UpgradeResult.webSocket
                    }
                })
            let upgrade = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: self.tls))
                        if attempted.value {
                            try self.addHTTPHandlers(to: channel, ledger: ledger.value, logger: logger)
                            return .failedUpgrade(try Self.asyncChannel(channel))
                        }
                        // The connection's task is not bound to an async channel until the
                        // first request shows whether it is an ordinary request or a live stream.
                        let first = FirstRequestDecision(promise: channel.eventLoop.makePromise())
                        let live = LiveEventsHandler(
                            dependencies: dependencies, eventLoop: channel.eventLoop,
                            onTakeOver: { first.decide(.liveEvents) })
                        try channel.pipeline.syncOperations.addHandler(live)
                        try channel.pipeline.syncOperations.addHandler(
                            FirstRequestGate(first: first) { channel in
                                try self.addHTTPHandlers(to: channel, ledger: ledger.value, logger: logger)
                                return try Self.asyncChannel(channel)
                            })
                        return .notUpgraded(first.promise.futureResult)
                    }
                })
            if let idleTimeout = self.http1.idleTimeout {
                try channel.pipeline.syncOperations.addHandler(FirstBytesDeadlineHandler(timeout: idleTimeout))
            }
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: upgrade)
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let pipeline = channel.pipeline.syncOperations
            let result = try pipeline.configureUpgradableHTTPServerPipeline(configuration: configuration)
            // Right after the decoder (NIO's own error handler goes there), from the first byte.
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(requestGuard.value, position: .after(decoder))
            // Before the encoder: its refusals are bytes.
            let encoder = try pipeline.handler(type: HTTPResponseEncoder.self)
            try pipeline.addHandler(byteFront.value, position: .before(encoder))
            return Value(upgradeResult: result, channel: channel)
        }
    }

    /// The frames a WebSocket viewer asked for.
    enum LiveFormat: Equatable {
        case full, counts
    }

    /// `format` of the upgrade's query: absent or `full`, or `counts`; nil for anything else
    /// (the upgrade is refused: an unknown value is an error, not ignored).
    static func format(_ uri: String) -> LiveFormat? {
        guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return .full }
        var format = LiveFormat.full
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.first == "format" else { continue }
            switch parts.count == 2 ? parts[1] : "" {
            case "full": format = .full
            case "counts": format = .counts
            default: return nil
            }
        }
        return format
    }

    /// The 101 response's extra headers: the security headers every response carries.
    static func upgradeHeaders(_ dependencies: LiveDependencies) -> HTTPHeaders {
        HTTPHeaders(dependencies.securityHeaders.map { ($0.name.rawName, $0.value) })
    }

    /// The handlers of an ordinary HTTP connection after the codec (as Hummingbird's HTTP1Channel).
    func addHTTPHandlers(to channel: any Channel, ledger: RequestLedger, logger: Logger) throws {
        try channel.pipeline.syncOperations.addHandler(AdmissionHandler(admission: self.admission, ledger: ledger))
        try channel.pipeline.syncOperations.addHandlers(self.http1.additionalChannelHandlers())
        try channel.pipeline.syncOperations.addHandler(
            HTTPConnectionStateHandler(idleTimeout: self.http1.idleTimeout.map { .init($0) }, logger: logger))
    }

    static func asyncChannel(_ channel: any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart> {
        try NIOAsyncChannel(
            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let first):
                switch try await first.get() {
                case .http(let http):
                    await self.handleHTTP(asyncChannel: http, logger: logger)
                case .liveEvents:
                    // Served by LiveEventsHandler on the event loop from here on.
                    return
                }
            case .failedUpgrade(let http):
                // The one JSON error shape, as every other refusal.
                let error = APIError(
                    .badRequest, .badRequest,
                    "WebSocket upgrades are served at GET /v1/live (format=full or format=counts), "
                        + "once the server has loaded its polls")
                let body = ByteBuffer(string: error.json)
                try await http.executeThenClose { _, outbound in
                    var headers: HTTPFields = [
                        .connection: "close", .contentType: "application/json; charset=utf-8",
                        .contentLength: String(body.readableBytes),
                    ]
                    headers.append(contentsOf: self.dependencies.securityHeaders)
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponse(status: .badRequest, headerFields: headers)), .body(body), .end(nil),
                    ])
                }
            case .webSocket:
                // Served by LiveSocketHandler on the event loop from here on: no task waits.
                return
            }
        } catch {
            logger.debug("connection setup failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Who serves a plain HTTP connection, decided once at its first request: Hummingbird, or a
/// live event stream. Used on the connection's event loop only; later calls do nothing.
final class FirstRequestDecision {
    let promise: EventLoopPromise<LiveHTTPChannel.FirstRequest>
    private(set) var decided = false

    init(promise: EventLoopPromise<LiveHTTPChannel.FirstRequest>) {
        self.promise = promise
    }

    func decide(_ result: LiveHTTPChannel.FirstRequest) {
        guard !self.decided else { return }
        self.decided = true
        self.promise.succeed(result)
    }

    func fail(_ error: any Error) {
        guard !self.decided else { return }
        self.decided = true
        self.promise.fail(error)
    }
}

/// Holds a plain HTTP connection's first request until it knows who serves the connection:
/// if `LiveEventsHandler` (before it) took the request, the gate never sees it; otherwise it
/// binds the connection to Hummingbird (`makeHTTP`), passes the request on, and steps aside.
final class FirstRequestGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let first: FirstRequestDecision
    private let makeHTTP: (any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    init(
        first: FirstRequestDecision,
        makeHTTP: @escaping (any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    ) {
        self.first = first
        self.makeHTTP = makeHTTP
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.first.decided else {
            context.fireChannelRead(data)
            return
        }
        do {
            self.first.decide(.http(try self.makeHTTP(context.channel)))
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            self.first.fail(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed before any request: nobody waits any more.
        self.first.fail(ChannelError.inputClosed)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.first.fail(ChannelError.inputClosed)
    }
}

/// Closes a new connection that sends nothing within `timeout`. Without `negotiation`, it steps
/// aside at the first bytes (from then on the HTTP idle timeout and `HTTP1RequestGuard` apply).
/// With it, the connection must finish negotiating (TLS and ALPN, or the HTTP/2 preface sniff)
/// within `negotiation` of its first bytes; whoever set it up removes it when that is done. So a
/// client that trickles a TLS handshake or the first bytes of the HTTP/2 preface is cut too.
/// A client that closes its side before anything was decided is closed at once.
final class FirstBytesDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let negotiation: TimeAmount?
    private var deadline: Scheduled<Void>?
    private var sawBytes = false

    init(timeout: TimeAmount, negotiation: TimeAmount? = nil) {
        self.timeout = timeout
        self.negotiation = negotiation
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.deadline = context.eventLoop.scheduleTask(in: self.timeout) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !self.sawBytes {
            self.sawBytes = true
            self.deadline?.cancel()
            self.deadline = nil
            if let negotiation {
                let channel = context.channel
                self.deadline = context.eventLoop.scheduleTask(in: negotiation) { channel.close(promise: nil) }
            }
        }
        context.fireChannelRead(data)
        if self.negotiation == nil {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadline?.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Shutting down, or the client closed its side (the server allows half-closure), and
        // nothing was decided yet: nothing to answer, close it now rather than at the deadline.
        if event is ChannelShouldQuiesceEvent || (event as? ChannelEvent) == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
