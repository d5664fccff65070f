import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import PollwireCore
import PollwireEngine
import Synchronization

/// `GET /v1/live` after the WebSocket upgrade: a plain SwiftNIO handler, no Swift task per
/// socket, so an idle viewer costs only its channel and this object.
///
/// Client messages (JSON text):
/// `{"type": "subscribe", "polls": ["a", "b"], "receipts": {"a": "..."}, "windows": "10s"}` and
/// `{"type": "unsubscribe", "polls": ["a"]}`. With `windows`, the polls' live `window` events of
/// that width too (`WindowFeed`); a subscribe without it stops them for the polls it names.
/// Server messages: `{"type": "subscribed", "polls": [...], "missing": [...]}`,
/// `{"type": "unsubscribed", "polls": [...]}`, `{"type": "error", "error": {...}}`, and each
/// results update as the results JSON itself (the same shared bytes as `GET /results`, which
/// name their `poll` and `version`), at once on subscribe and then on every new version.
/// A socket opened as `GET /v1/live?format=counts` gets each poll's full results once (on
/// subscribe: labels and all) and then the compact form only (`ResultsJSON.compact`: version and
/// counts), made once per version and shared like the full one.
///
/// Flow control: frames are written while the channel is writable. When it is not (the viewer
/// reads slowly), at most one frame per poll waits here, replaced by newer ones; a viewer that
/// stays unwritable past the Hub's stuck deadline is closed with 1008 and a reason.
///
/// Threading: `LiveSubscriber` methods may be called from any thread; they hop to the
/// channel's event loop. Every `var` below is touched on that event loop only.
final class LiveSocketHandler: ChannelInboundHandler, RemovableChannelHandler, LoopLiveSubscriber, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Most polls one socket may follow.
    static let maxPolls = 100
    /// Largest client message.
    static let maxMessageBytes = 16 * 1024

    struct ClientMessage: Decodable {
        var type: String
        var polls: [String]?
        var receipts: [String: String]?
        /// A window width (`analytics.windows`): the polls' `window` events too.
        var windows: String?
    }

    /// What the Hub reads from its own thread.
    struct Shared {
        var receipts: Set<String> = []
    }

    private let dependencies: LiveDependencies
    private let eventLoop: any EventLoop
    private let shared = Mutex(Shared())
    let deliveryGroup: (any LiveDeliveryGroup)?

    // Event loop only.
    private var context: ChannelHandlerContext?
    /// The frame encoder's context: results frames, already encoded, are written from there,
    /// past the encoder (one shared buffer per frame, no header built per viewer).
    private var encoderContext: ChannelHandlerContext?
    private var subscriptions: Set<String> = []
    private let flow: LiveFlow
    private var message: ByteBuffer?
    private var closing = false

    /// The `Origin` of the upgrade request: a browser page's, held to each poll's allowed origins.
    private let origin: String?
    /// Whether permessage-deflate was negotiated.
    private let deflate: Bool
    /// Whether the message being read arrived compressed (RSV1 on its first frame).
    private var compressedMessage = false
    /// `format=counts`: after a poll's first (full) frame, its compact frames.
    private let compact: Bool
    /// The polls whose full results this viewer has (with `compact`).
    private var hasFull: Set<String> = []
    /// While a `subscribe` waits for the store to be asked about polls this node has not heard of
    /// (cluster), the messages after it wait here, in order.
    private var catchingUp = false
    private var waiting: [String] = []
    /// Most messages that may wait behind a catch-up.
    static let maxWaiting = 16

    init(
        dependencies: LiveDependencies, eventLoop: any EventLoop, origin: String? = nil, deflate: Bool = false,
        compact: Bool = false
    ) {
        self.origin = origin
        self.deflate = deflate
        self.compact = compact
        self.dependencies = dependencies
        self.eventLoop = eventLoop
        self.deliveryGroup = dependencies.deliveries.group(for: eventLoop)
        self.flow = LiveFlow(metrics: dependencies.webSocketMetrics)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.encoderContext = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        self.dependencies.webSocketMetrics.connected()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        for pollID in self.subscriptions {
            self.dependencies.hub.unsubscribe(self, from: pollID)
            self.dependencies.windows?.unsubscribe(self, from: pollID)
        }
        self.subscriptions.removeAll()
        self.flow.removeAll()
        self.context = nil
        self.encoderContext = nil
        self.dependencies.webSocketMetrics.disconnected()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .continuation:
            var payload = frame.unmaskedData
            if frame.opcode == .text {
                self.message = context.channel.allocator.buffer(capacity: payload.readableBytes)
                self.compressedMessage = self.deflate && frame.rsv1
            }
            guard var message = self.message else { return }
            guard message.readableBytes + payload.readableBytes <= Self.maxMessageBytes else {
                self.close(code: .messageTooLarge, reason: "messages are at most \(Self.maxMessageBytes) bytes")
                return
            }
            message.writeBuffer(&payload)
            self.message = message
            if frame.fin {
                self.message = nil
                if self.compressedMessage {
                    guard let inflated = try? PerMessageDeflate.inflate(message, limit: Self.maxMessageBytes) else {
                        self.close(code: .messageTooLarge, reason: "a compressed message is corrupt or too large")
                        return
                    }
                    message = inflated
                }
                self.receive(String(buffer: message), context: context)
            }
        case .ping:
            self.write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData), context: context)
            context.flush()
        case .connectionClose:
            self.close(code: .normalClosure, reason: nil)
        case .binary:
            self.reply(Self.error(.badRequest, "messages are JSON text"), context: context)
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for frame in self.flow.resume() { self.send(frame, context: context) }
            context.flush()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.close(code: .goingAway, reason: "the server is shutting down")
            return
        }
        // The viewer's side is closed without a close frame: it is gone (see LiveEventsHandler).
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: LiveSubscriber (any thread)

    func offer(_ frame: LiveFrame) {
        self.eventLoop.execute { self.deliver(frame) }
    }

    func ping() {
        self.eventLoop.execute {
            guard let context = self.context, !self.closing, context.channel.isWritable, !self.flow.hasPending else {
                return
            }
            self.write(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()), context: context)
            context.flush()
        }
    }

    var writingSince: ContinuousClock.Instant? { self.flow.unwritableSince }

    func close(reason: String) {
        self.eventLoop.execute {
            let shuttingDown = reason.contains("shutting down")
            self.close(code: shuttingDown ? .goingAway : .policyViolation, reason: reason)
        }
    }

    func hasVoted(_ pollID: String) -> Bool { self.shared.withLock { $0.receipts.contains(pollID) } }

    // MARK: Writing (event loop)

    /// Delivers a frame; must be called on the channel's event loop.
    func deliver(_ frame: LiveFrame) {
        self.eventLoop.assertInEventLoop()
        guard let context = self.context, !self.closing, self.subscriptions.contains(frame.pollID) else { return }
        guard self.flow.isNew(frame) else { return }
        guard context.channel.isWritable else {
            self.flow.hold(frame)
            return
        }
        self.send(frame, context: context)
        context.flush()
    }

    /// Writes one results frame: the shared JSON bytes, a WebSocket header in front (the compact
    /// form's, uncompressed: it is a few dozen bytes, when the viewer asked for it and has the
    /// poll's full results already).
    private func send(_ frame: LiveFrame, context: ChannelHandlerContext) {
        if self.compact, frame.kind == .results, !frame.hidden, !self.hasFull.insert(frame.pollID).inserted,
            let encoderContext = self.encoderContext
        {
            encoderContext.write(NIOAny(frame.compactWebSocketFrame), promise: nil)
        } else if self.deflate,
            let deflated = try? frame.deflated.value(orMake: { try PerMessageDeflate.compress(frame.json) })
        {
            self.write(WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: deflated), context: context)
        } else if let encoderContext = self.encoderContext {
            encoderContext.write(NIOAny(frame.webSocketFrame), promise: nil)
        } else {
            self.write(WebSocketFrame(fin: true, opcode: .text, data: frame.json), context: context)
        }
        self.flow.sent(frame)
    }

    private func write(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(frame), promise: nil)
    }

    private func reply(_ text: String, context: ChannelHandlerContext) {
        self.write(
            WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text)),
            context: context)
        context.flush()
    }

    private func close(code: WebSocketErrorCode, reason: String?) {
        guard let context = self.context, !self.closing else { return }
        self.closing = true
        var data = context.channel.allocator.buffer(capacity: 2 + (reason?.utf8.count ?? 0))
        data.write(webSocketErrorCode: code)
        if let reason { data.writeString(String(reason.prefix(120))) }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in loopBound.value.close(promise: nil) }
        // A viewer that does not read never lets the close frame out: do not wait for it.
        if !context.channel.isWritable { context.close(promise: nil) }
    }

    // MARK: Messages (event loop)

    /// Answers one client message, in order. A `subscribe` naming polls the book does not hold
    /// first has the change feed look them up (another node may have just made them): the
    /// messages after it wait until it is answered.
    private func receive(_ text: String, context: ChannelHandlerContext) {
        if self.catchingUp {
            guard self.waiting.count < Self.maxWaiting else {
                self.close(code: .policyViolation, reason: "too many messages while a subscription is being looked up")
                return
            }
            self.waiting.append(text)
            return
        }
        let request = try? JSONDecoder().decode(ClientMessage.self, from: Data(text.utf8))
        let book = self.dependencies.book
        let unknown = request?.type == "subscribe" ? (request?.polls ?? []).filter { book.poll($0) == nil } : []
        guard let finder = self.dependencies.finder, finder.feed != nil, !unknown.isEmpty else {
            self.reply(self.handle(request), context: context)
            return
        }
        self.catchingUp = true
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let eventLoop = self.eventLoop
        Task {
            for id in Set(unknown).prefix(Self.maxPolls) { _ = await finder.knows(id) }
            eventLoop.execute {
                let handler = bound.value
                handler.catchingUp = false
                guard let context = handler.context, !handler.closing else { return }
                handler.reply(handler.handle(request), context: context)
                let waiting = handler.waiting
                handler.waiting = []
                for (index, text) in waiting.enumerated() {
                    handler.receive(text, context: context)
                    if handler.catchingUp {
                        handler.waiting.append(contentsOf: waiting[(index + 1)...])
                        break
                    }
                }
            }
        }
    }

    /// Applies one client message (nil: not a message) and returns the reply.
    private func handle(_ request: ClientMessage?) -> String {
        guard let request else {
            return Self.error(.invalidJSON, "messages are JSON text: {\"type\": \"subscribe\", \"polls\": [...]}")
        }
        let polls = request.polls ?? []
        let hub = self.dependencies.hub
        switch request.type {
        case "subscribe":
            if let width = request.windows, self.dependencies.windows?.widths[width] == nil {
                let widths = self.dependencies.windows?.widths.keys.sorted().joined(separator: ", ") ?? ""
                return Self.error(.invalidField, "windows must be one of \(widths)")
            }
            var subscribed: [String] = []
            var missing: [String] = []
            var forbidden: [String] = []
            for pollID in polls {
                guard let poll = self.dependencies.book.poll(pollID), poll.status != .draft else {
                    missing.append(pollID)
                    continue
                }
                guard OriginPolicy.allows(self.origin, poll: poll) else {
                    forbidden.append(pollID)
                    continue
                }
                if !self.subscriptions.contains(pollID) {
                    guard self.subscriptions.count < Self.maxPolls else {
                        return Self.error(.badRequest, "a socket may follow at most \(Self.maxPolls) polls")
                    }
                    self.subscriptions.insert(pollID)
                    hub.subscribe(self, to: pollID)
                }
                if let width = request.windows {
                    _ = self.dependencies.windows?.subscribe(self, to: pollID, width: width)
                } else {
                    self.dependencies.windows?.unsubscribe(self, from: pollID)
                }
                let receipt = request.receipts?[pollID]
                let valid = self.dependencies.signer.isValidReceipt(receipt, pollID: pollID)
                self.shared.withLock { shared in
                    if valid { shared.receipts.insert(pollID) } else { shared.receipts.remove(pollID) }
                }
                if let frame = hub.currentFrame(of: pollID, hasVoted: valid) {
                    // After the reply, so the acknowledgement comes first.
                    self.eventLoop.execute { self.deliver(frame) }
                }
                subscribed.append(pollID)
            }
            return "{\"type\":\"subscribed\",\"polls\":\(Self.list(subscribed)),\"missing\":\(Self.list(missing)),"
                + "\"forbidden\":\(Self.list(forbidden))}"
        case "unsubscribe":
            for pollID in polls where self.subscriptions.remove(pollID) != nil {
                hub.unsubscribe(self, from: pollID)
                self.dependencies.windows?.unsubscribe(self, from: pollID)
                self.flow.forget(pollID)
                self.hasFull.remove(pollID)
                _ = self.shared.withLock { $0.receipts.remove(pollID) }
            }
            return "{\"type\":\"unsubscribed\",\"polls\":\(Self.list(polls))}"
        default:
            return Self.error(.badRequest, "type must be subscribe or unsubscribe")
        }
    }

    static func list(_ ids: [String]) -> String {
        var text = "["
        for (index, id) in ids.enumerated() {
            if index > 0 { text += "," }
            JSONText.appendQuoted(id, to: &text)
        }
        return text + "]"
    }

    static func error(_ code: APIError.Code, _ message: String) -> String {
        "{\"type\":\"error\"," + APIError(.badRequest, code, message).json.dropFirst()
    }
}

/// A live viewer served on its channel's event loop.
protocol LoopLiveSubscriber: LiveSubscriber {
    /// Delivers a frame; must be called on the channel's event loop.
    func deliver(_ frame: LiveFrame)
}

/// One delivery group per event loop: a publish tick reaches all the sockets of a loop with one
/// `execute` (one wake-up of the loop), not one per socket.
final class LoopDelivery: LiveDeliveryGroup {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func offer(_ batch: [(subscriber: any LiveSubscriber, frame: LiveFrame)]) {
        self.eventLoop.execute {
            for (subscriber, frame) in batch {
                (subscriber as? any LoopLiveSubscriber)?.deliver(frame)
            }
        }
    }
}

/// The delivery group of each event loop, made on first use.
final class LoopDeliveries: Sendable {
    private let groups = Mutex<[ObjectIdentifier: LoopDelivery]>([:])

    func group(for eventLoop: any EventLoop) -> LoopDelivery {
        self.groups.withLock { groups in
            if let group = groups[ObjectIdentifier(eventLoop)] { return group }
            let group = LoopDelivery(eventLoop: eventLoop)
            groups[ObjectIdentifier(eventLoop)] = group
            return group
        }
    }
}

/// What the live handlers share: the Hub, the polls, receipts, per-loop delivery groups, and
/// metrics per transport.
struct LiveDependencies: Sendable {
    let hub: Hub
    /// Live `window` events (nil: none).
    var windows: WindowFeed? = nil
    let book: TallyBook
    /// Looks up polls another node made a moment ago (cluster); nil or without a feed: the book only.
    var finder: PollFinder? = nil
    let signer: Signer
    let deliveries: LoopDeliveries
    let webSocketMetrics: LiveMetrics
    let eventsMetrics: LiveMetrics
    /// `SecurityHeaders` for the responses the live handlers write themselves.
    let securityHeaders: HTTPFields
}
