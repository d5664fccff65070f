import Foundation
import HTTPTypes
import Metrics
import NIOCore
import NIOHTTPTypes
import PollwireCore
import PollwireEngine
import Synchronization

/// `GET /v1/polls/{id}/live` as Server-Sent Events, served by a plain SwiftNIO handler in the
/// HTTP pipeline (after HTTP decoding, before Hummingbird): no request task and no streamed
/// response body per viewer.
///
/// Every other request passes through to the router. A live request for a poll that does not
/// exist, or before tallies are loaded, also passes through, so the router answers it with the
/// usual error. Once it takes a request, the connection is an event stream until it closes.
///
/// The stream: a `retry:` hint (1 to 3 s, jittered so a restart does not bring every viewer
/// back at once), the current results at once unless `Last-Event-ID` names what the viewer would
/// get now, then each change as `id: <version>` (`<version>-h` while the results are hidden),
/// `event: results`, `data: <results JSON>`, and a `: ping` comment on idle heartbeats. With
/// `?windows=10s`, also an `event: window` (no id) as each window of that width ends (`WindowFeed`). A
/// reveal, a close (also a scheduled one) or a reopening changes the id, so a viewer that
/// resumes after it gets what it may now see. Flow control as in `LiveSocketHandler`.
///
/// Threading: `LiveSubscriber` methods may be called from any thread; every `var` is touched
/// on the channel's event loop only.
final class LiveEventsHandler: ChannelInboundHandler, RemovableChannelHandler, LoopLiveSubscriber,
    @unchecked Sendable
{
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    struct Shared {
        var hasVoted = false
    }

    private let dependencies: LiveDependencies
    private let eventLoop: any EventLoop
    private let shared = Mutex(Shared())
    let deliveryGroup: (any LiveDeliveryGroup)?

    // Event loop only.
    private var context: ChannelHandlerContext?
    /// The poll streamed, once this connection took a live request.
    private var pollID: String?
    /// The id of the last event the viewer saw (`Last-Event-ID`): resuming with the current one
    /// sends nothing until the next change.
    private var lastEventID: String?
    /// `windows=10s`: the poll's `window` events of that width too.
    private var windows: String?
    private var origin: String?
    private var streaming = false
    private var closing = false
    private let flow: LiveFlow

    static let ping = ByteBuffer(string: ": ping\n\n")

    /// Called once, when this handler takes the connection's first request as a live stream.
    private var onTakeOver: (() -> Void)?

    init(dependencies: LiveDependencies, eventLoop: any EventLoop, onTakeOver: (() -> Void)? = nil) {
        self.dependencies = dependencies
        self.eventLoop = eventLoop
        self.onTakeOver = onTakeOver
        self.deliveryGroup = dependencies.deliveries.group(for: eventLoop)
        self.flow = LiveFlow(metrics: dependencies.eventsMetrics)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        if self.pollID == nil, case .head(let request) = part, let pollID = self.liveRequest(request) {
            self.pollID = pollID
            self.lastEventID = request.headerFields[.lastEventID]
            self.windows = Self.query(request.path, "windows")
            self.origin = request.headerFields[.origin]
            let receipt = request.headerFields[.pollwireReceipt] ?? Self.query(request.path, "receipt")
            let valid = self.dependencies.signer.isValidReceipt(receipt, pollID: pollID)
            self.shared.withLock { $0.hasVoted = valid }
            self.onTakeOver?()
            self.onTakeOver = nil
            return
        }
        guard self.pollID != nil else {
            context.fireChannelRead(data)
            return
        }
        if case .end = part, !self.streaming { self.start(context: context) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, self.streaming {
            for frame in self.flow.resume() { self.send(frame, context: context) }
            context.flush()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if self.streaming, event is ChannelShouldQuiesceEvent {
            self.finish()
            return
        }
        // The viewer closed its side (the server allows half-closure for HTTP): nobody reads the
        // stream any more. Without this the connection stayed subscribed, in CLOSE-WAIT, until a
        // write failed: up to the 15 s heartbeat on a quiet poll.
        if self.streaming, case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: The stream

    /// The poll id of a `GET /v1/polls/{id}/live` this handler should serve, nil otherwise.
    private func liveRequest(_ request: HTTPRequest) -> String? {
        // Every GET passes here (results reads too): the route is parsed once, without Foundation.
        guard request.method == .get, case .liveEvents(let poll) = Route(request) else { return nil }
        let pollID = String(poll)
        guard self.dependencies.book.isLoaded, let poll = self.dependencies.book.poll(pollID), poll.status != .draft,
            OriginPolicy.allows(request.headerFields[.origin], poll: poll)
        else { return nil }
        // A width that is not served: the router answers 422.
        if let width = Self.query(request.path, "windows"), self.dependencies.windows?.widths[width] == nil {
            return nil
        }
        return pollID
    }

    private func start(context: ChannelHandlerContext) {
        guard let pollID = self.pollID else { return }
        self.streaming = true
        var fields: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        fields.append(contentsOf: self.dependencies.securityHeaders)
        if let origin = self.origin {
            fields[.accessControlAllowOrigin] = origin
            fields[.vary] = "Origin"
        }
        let head = HTTPResponse(status: .ok, headerFields: fields)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        let retry = context.channel.allocator.buffer(string: "retry: \(Int.random(in: 1000...3000))\n\n")
        context.write(self.wrapOutboundOut(.body(retry)), promise: nil)
        self.dependencies.eventsMetrics.connected()
        self.dependencies.hub.subscribe(self, to: pollID)
        if let width = self.windows { _ = self.dependencies.windows?.subscribe(self, to: pollID, width: width) }
        if let frame = self.dependencies.hub.currentFrame(of: pollID, hasVoted: self.hasVoted(pollID)),
            frame.eventID != self.lastEventID
        {
            self.send(frame, context: context)
        }
        context.flush()
    }

    private func stop() {
        guard self.streaming, let pollID = self.pollID else { return }
        self.streaming = false
        self.dependencies.hub.unsubscribe(self, from: pollID)
        self.dependencies.windows?.unsubscribe(self, from: pollID)
        self.dependencies.eventsMetrics.disconnected()
        self.flow.removeAll()
    }

    /// Ends the stream cleanly (shutdown) or closes a stuck one.
    private func finish() {
        guard let context = self.context, !self.closing else { return }
        self.closing = true
        guard context.channel.isWritable else {
            context.close(promise: nil)
            return
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    func deliver(_ frame: LiveFrame) {
        self.eventLoop.assertInEventLoop()
        guard let context = self.context, self.streaming, !self.closing, frame.pollID == self.pollID,
            self.flow.isNew(frame)
        else { return }
        guard context.channel.isWritable else {
            self.flow.hold(frame)
            return
        }
        self.send(frame, context: context)
        context.flush()
    }

    /// Writes one event: the frame's shared SSE bytes, as one chunk.
    private func send(_ frame: LiveFrame, context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(.body(frame.event)), promise: nil)
        self.flow.sent(frame)
    }

    // MARK: LiveSubscriber (any thread)

    func offer(_ frame: LiveFrame) {
        self.eventLoop.execute { self.deliver(frame) }
    }

    func ping() {
        self.eventLoop.execute {
            guard let context = self.context, self.streaming, !self.closing, context.channel.isWritable,
                !self.flow.hasPending
            else { return }
            context.writeAndFlush(self.wrapOutboundOut(.body(Self.ping)), promise: nil)
        }
    }

    var writingSince: ContinuousClock.Instant? { self.flow.unwritableSince }

    func close(reason: String) {
        self.eventLoop.execute { self.finish() }
    }

    func hasVoted(_ pollID: String) -> Bool { self.shared.withLock { $0.hasVoted } }

    static func query(_ path: String?, _ name: String) -> String? {
        guard let query = path?.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return String(parts[1]).removingPercentEncoding }
        }
        return nil
    }
}
