import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// Every connection's child channel: HTTP/1.1 with the live endpoints (`LiveHTTPChannel`), or
/// HTTP/2 (Hummingbird's `HTTP2Channel`), chosen per connection:
///
/// - with TLS, by ALPN (`h2`, else `http/1.1`);
/// - without, by the first bytes: the HTTP/2 connection preface (h2c with prior knowledge,
///   RFC 9113 §3.3) or anything else, which is HTTP/1.1.
///
/// WebSockets stay on HTTP/1.1 (browsers open a separate HTTP/1.1 connection for them);
/// the SSE endpoint is served on both: on HTTP/2 each stream gets its own `LiveEventsHandler`.
struct PollwireServerChannel: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        case http1(LiveHTTPChannel.Value)
        case http2(HTTP2Channel.Value)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let http1: LiveHTTPChannel
    let http2: HTTP2Channel?
    let sslContext: NIOSSLContext?
    /// A connection that sends nothing within this time is closed before it is classified.
    let firstBytesTimeout: TimeAmount
    /// A connection must be classified (TLS and ALPN done, or the HTTP/2 preface told apart)
    /// within this time of its first bytes.
    let negotiationTimeout: TimeAmount

    var responder: Responder { self.http1.responder }

    /// The TLS context for `tls`: ALPN offers h2 (when enabled) then http/1.1.
    static func sslContext(_ tls: TLSSettings, http2: Bool) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(tls.certificatePath)
        let key = try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.applicationProtocols = http2 ? ["h2", "http/1.1"] : ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // One read per wake-up: a request (or a vote) fits one read, and the second read of
            // NIO's default loop only finds EAGAIN: a syscall per request for nothing.
            try channel.syncOptions?.setOption(.maxMessagesPerRead, value: 1)
            let pipeline = channel.pipeline.syncOperations
            let negotiated: EventLoopFuture<Negotiated>
            let deadline = FirstBytesDeadlineHandler(
                timeout: self.firstBytesTimeout, negotiation: self.negotiationTimeout)
            if let sslContext {
                try pipeline.addHandler(deadline)
                try pipeline.addHandler(NIOSSLServerHandler(context: sslContext))
                let alpn = NIOTypedApplicationProtocolNegotiationHandler<Negotiated> { result in
                    if case .negotiated("h2") = result, self.http2 != nil {
                        return self.setUp(http2: true, channel: channel, logger: logger)
                    }
                    return self.setUp(http2: false, channel: channel, logger: logger)
                }
                try pipeline.addHandler(alpn)
                negotiated = alpn.protocolNegotiationResult
            } else if self.http2 != nil {
                try pipeline.addHandler(deadline)
                let sniffer = HTTP2PrefaceSniffer(promise: channel.eventLoop.makePromise()) { isHTTP2 in
                    self.setUp(http2: isHTTP2, channel: channel, logger: logger)
                }
                try pipeline.addHandler(sniffer)
                negotiated = sniffer.promise.futureResult
            } else {
                return Value(negotiated: self.setUp(http2: false, channel: channel, logger: logger), channel: channel)
            }
            // Decided: the protocol's own deadlines take over.
            let loopBound = NIOLoopBound(deadline, eventLoop: channel.eventLoop)
            negotiated.whenComplete { _ in
                channel.pipeline.syncOperations.removeHandler(loopBound.value, promise: nil)
            }
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    private func setUp(http2: Bool, channel: any Channel, logger: Logger) -> EventLoopFuture<Negotiated> {
        if http2, let channel2 = self.http2 {
            return channel2.setup(channel: channel, logger: logger).map { .http2($0) }
        }
        return self.http1.setup(channel: channel, logger: logger).map { .http1($0) }
    }

    /// The handlers of each HTTP/2 stream: the read deadline, the SSE endpoint (made on the
    /// stream's event loop, where Hummingbird calls this), admission control, and the fast
    /// path.
    static func streamHandlers(
        _ live: LiveDependencies, admission: Admission, fastPath: FastPathHandler.Dependencies,
        readTimeout: TimeAmount
    ) -> [any RemovableChannelHandler] {
        var handlers: [any RemovableChannelHandler] = [RequestReadDeadlineHandler(timeout: readTimeout)]
        if let eventLoop = MultiThreadedEventLoopGroup.currentEventLoop {
            handlers.append(LiveEventsHandler(dependencies: live, eventLoop: eventLoop))
        }
        handlers.append(AdmissionHandler(admission: admission))
        handlers.append(FastPathHandler(dependencies: fastPath))
        return handlers
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1(let http1):
                await self.http1.handle(value: http1, logger: logger)
            case .http2(let http2):
                await self.http2?.handle(value: http2, logger: logger)
            }
        } catch {
            logger.debug("connection setup failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Reads a plain connection's first bytes until they show whether it starts with the HTTP/2
/// preface, has `decide` set the pipeline up behind it, passes the bytes on and steps aside.
final class HTTP2PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Completed with the connection's pipeline once decided; failed if it closes before.
    let promise: EventLoopPromise<PollwireServerChannel.Negotiated>
    private let decide: (Bool) -> EventLoopFuture<PollwireServerChannel.Negotiated>
    private var buffered: ByteBuffer?
    private var decided = false

    init(
        promise: EventLoopPromise<PollwireServerChannel.Negotiated>,
        decide: @escaping (Bool) -> EventLoopFuture<PollwireServerChannel.Negotiated>
    ) {
        self.promise = promise
        self.decide = decide
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.giveUp()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.giveUp()
    }

    /// Closed before a decision: nobody will serve the connection, so nobody waits for it.
    private func giveUp() {
        guard !self.decided else { return }
        self.decided = true
        self.promise.fail(ChannelError.inputClosed)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        guard !self.decided else {
            context.fireChannelRead(data)
            return
        }
        if var buffered = self.buffered {
            buffered.writeBuffer(&bytes)
            self.buffered = buffered
        } else {
            self.buffered = bytes
        }
        guard let buffered = self.buffered else { return }
        let count = min(buffered.readableBytes, Self.preface.count)
        let start = buffered.readableBytesView.prefix(count)
        let isPrefix = start.elementsEqual(Self.preface.prefix(count))
        guard !isPrefix || count == Self.preface.count else { return }  // wait for more
        self.decided = true
        let loopBound = NIOLoopBound((context, self), eventLoop: context.eventLoop)
        let setUp = self.decide(isPrefix)
        setUp.cascade(to: self.promise)
        setUp.whenComplete { result in
            let (context, handler) = loopBound.value
            guard case .success = result else {
                context.close(promise: nil)
                return
            }
            handler.buffered = nil
            context.fireChannelRead(handler.wrapInboundOut(buffered))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.decided { context.fireChannelReadComplete() }
    }
}
