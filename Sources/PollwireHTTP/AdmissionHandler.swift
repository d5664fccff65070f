import HTTPTypes
import Metrics
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Admission control: a cap on requests in flight, one pool for the audience and one for the
/// owners (requests with an API key), so that a vote flood cannot lock the owners out.
/// Health, readiness and metrics are never refused.
///
/// The count and the refusal live in `AdmissionHandler`, in the channel pipeline before
/// Hummingbird: a refused request costs its HTTP parsing, one atomic load and one prepared
/// response, and never becomes a `Request`, a task or a trip through the router (on HTTP/1,
/// `ByteFrontHandler` refuses before the parsing). A request is in flight from when it has
/// arrived whole until its response's end is written, including the time it waits for a task,
/// which is what grows when the server falls behind.
///
/// The voters' cap adapts below `admission.maxInFlight` (`Pool.adapt`): a fixed cap bounds how
/// many requests are in flight, not how much CPU they take, and a server offered more than it
/// can take spends its CPU on admitted work until it cannot even read (and refuse) the rest in
/// time: everything waits in the kernel, admitted requests too. `LoopDelayMonitor` measures how
/// late the event loops run a task due every 10 ms; while that delay (smoothed) is past
/// `admission.maxLoopDelayMs`, the cap in force shrinks to three quarters of what is in flight per
/// sample, and grows back by a sixteenth (at least one) per sample below half of it. The owners'
/// cap stays fixed.
///
/// The ingest queue has its own bound (`ingest.queueCapacity`): an admitted vote may still get
/// 503 `overloaded` when the writer is behind.
final class Admission: Sendable {
    final class Pool: Sendable {
        /// The ceiling: `admission.maxInFlight` (or the owners' cap).
        let limit: Int
        /// The cap in force, at most `limit`.
        let current: Atomic<Int>
        let inFlight = Atomic<Int>(0)
        let refused: Counter
        let gauge: Gauge

        /// The cap never narrows below this (or `limit`, if lower): below a handful in flight,
        /// admitted requests are not what keeps the loops busy (another server in the process,
        /// live frames, a slow machine), and narrowing further would only refuse.
        static let floor = 8

        init(limit: Int, name: String, factory: any MetricsFactory) {
            self.limit = limit
            self.current = Atomic(limit)
            self.refused = Counter(
                label: "pollwire_admission_refused_total", dimensions: [("pool", name)], factory: factory)
            self.gauge = Gauge(label: "pollwire_admission_limit", dimensions: [("pool", name)], factory: factory)
            self.gauge.record(limit)
        }

        var isFull: Bool { self.inFlight.load(ordering: .relaxed) >= self.current.load(ordering: .relaxed) }
        func enter() { self.inFlight.wrappingAdd(1, ordering: .relaxed) }
        func leave() { self.inFlight.wrappingSubtract(1, ordering: .relaxed) }

        /// The loops' delay, smoothed over the last samples (nanoseconds).
        let smoothedDelay = Atomic<Int64>(0)

        /// One sample of an event loop's delay against the most allowed. The delay is smoothed
        /// (each sample moves it a quarter of the way), so one slow tick (a burst of live frames)
        /// moves nothing, a sustained delay does. Above `allowed`, the cap in force shrinks to three
        /// quarters of what is in flight (or of itself, if lower); below half of it, it grows by a
        /// sixteenth (at least one) back towards `limit`. Returns the cap in force.
        @discardableResult
        func adapt(delay: TimeAmount, allowed: TimeAmount) -> Int {
            let previous = self.smoothedDelay.load(ordering: .relaxed)
            let smoothed = previous + (delay.nanoseconds - previous) / 4
            self.smoothedDelay.store(smoothed, ordering: .relaxed)
            let now = self.current.load(ordering: .relaxed)
            let next: Int
            if smoothed > allowed.nanoseconds {
                let base = Swift.min(now, Swift.max(1, self.inFlight.load(ordering: .relaxed)))
                next = Swift.max(Swift.min(Self.floor, self.limit), base * 3 / 4)
            } else if smoothed * 2 < allowed.nanoseconds {
                next = Swift.min(self.limit, now + Swift.max(1, now / 16))
            } else {
                next = now
            }
            guard next != now,
                self.current.compareExchange(expected: now, desired: next, ordering: .relaxed).exchanged
            else { return now }
            self.gauge.record(next)
            return next
        }
    }

    let voters: Pool
    let owners: Pool
    /// The refusal, prepared once: head and body.
    let head: HTTPResponse
    let body: ByteBuffer
    /// The same refusal as HTTP/1.1 bytes, for `ByteFrontHandler`.
    let http1Refusal: ByteBuffer

    init(settings: AdmissionSettings, securityHeaders: HTTPFields, factory: any MetricsFactory) {
        self.voters = Pool(limit: settings.maxInFlight, name: "voters", factory: factory)
        self.owners = Pool(limit: settings.maxManagementInFlight, name: "management", factory: factory)
        let error = APIError(
            .serviceUnavailable, .overloaded, "the server is at capacity: retry later",
            retryAfter: settings.retryAfterSeconds)
        self.body = ByteBuffer(string: error.json)
        var fields: HTTPFields = [
            .contentType: "application/json; charset=utf-8", .cacheControl: "no-store",
            .retryAfter: String(settings.retryAfterSeconds), .contentLength: String(self.body.readableBytes),
        ]
        fields.append(contentsOf: securityHeaders)
        self.head = HTTPResponse(status: .serviceUnavailable, headerFields: fields)
        var bytes = HTTP1Head.encode(.serviceUnavailable, fields)
        bytes.writeString("\r\n")
        bytes.writeImmutableBuffer(self.body)
        self.http1Refusal = bytes
    }

    /// The pool a request counts in; nil for the routes never refused.
    func pool(for request: HTTPRequest) -> Pool? {
        if Route(request) == .operations { return nil }
        return request.headerFields[.authorization] == nil ? self.voters : self.owners
    }
}

/// Counts a connection's (or HTTP/2 stream's) requests in their admission pool and refuses one
/// beyond its pool's cap with the prepared 503: the request's parts are dropped and the router
/// never sees it. A refusal is only answered when no earlier request of the connection is still
/// being answered, so responses keep their order.
///
/// A request takes its place once it has arrived whole: its head and body are held here until
/// its end (nearly every request arrives in one read, so this holds nothing for long), so that
/// clients that trickle their bodies cannot fill the pool and lock out well-behaved ones; the read
/// deadline cuts them off. Two exceptions take their place at the head, as before: a request that
/// asks for `Expect: 100-continue` (its client waits for an answer before sending the body), and
/// one whose held body passes `holdLimit` bytes (it is sent on, not kept).
final class AdmissionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Most body bytes held for one request before it is admitted on the spot.
    static let holdLimit = 64 * 1024

    private let admission: Admission
    /// Shared with the connection's `ByteFrontHandler` (HTTP/1 only): every answered request
    /// is counted in it.
    private let ledger: RequestLedger?
    /// The pools of the requests being answered, oldest first (more than one only when a client
    /// pipelines); each leaves its pool when its response ends.
    private var answering: [Admission.Pool?] = []
    /// The request still arriving: its head and the body parts so far, not yet admitted. The
    /// first part is kept on its own: a vote's body is one part, and holding it costs no array.
    private var held: (head: HTTPRequest, pool: Admission.Pool?, first: ByteBuffer?, rest: [ByteBuffer], bytes: Int)?
    /// Dropping the parts of a refused request until its end.
    private var refusing = false
    private var closeAfterRefusal = false

    init(admission: Admission, ledger: RequestLedger? = nil) {
        self.admission = admission
        self.ledger = ledger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            let pool = self.admission.pool(for: request)
            if pool == nil || request.headerFields[.expect]?.lowercased() == "100-continue" {
                self.admitOrRefuse(request, pool: pool, first: nil, rest: [], context: context)
            } else {
                self.held = (request, pool, nil, [], 0)
            }
        case .body(let part):
            if self.refusing { return }
            guard var held = self.held else {
                context.fireChannelRead(data)
                return
            }
            if held.first == nil { held.first = part } else { held.rest.append(part) }
            held.bytes += part.readableBytes
            if held.bytes > Self.holdLimit {
                self.held = nil
                self.admit(held.head, pool: held.pool, context: context)
                self.release(held.first, held.rest, context: context)
            } else {
                self.held = held
            }
        case .end:
            if let held = self.held {
                self.held = nil
                self.admitOrRefuse(held.head, pool: held.pool, first: held.first, rest: held.rest, context: context)
            }
            guard self.refusing else {
                context.fireChannelRead(data)
                return
            }
            self.refusing = false
            self.ledger?.answered += 1
            context.write(self.wrapOutboundOut(.head(self.admission.head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(self.admission.body)), promise: nil)
            if self.closeAfterRefusal {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                    loopBound.value.close(promise: nil)
                }
            } else {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }

    /// The request counts in its pool from here until its response ends, and goes on.
    private func admit(_ request: HTTPRequest, pool: Admission.Pool?, context: ChannelHandlerContext) {
        pool?.enter()
        self.answering.append(pool)
        context.fireChannelRead(self.wrapInboundOut(.head(request)))
    }

    /// Refuses the request when its pool is full (and nothing earlier is being answered);
    /// otherwise admits it and sends its held body on.
    private func admitOrRefuse(
        _ request: HTTPRequest, pool: Admission.Pool?, first: ByteBuffer?, rest: [ByteBuffer],
        context: ChannelHandlerContext
    ) {
        if let pool, pool.isFull, self.answering.isEmpty {
            pool.refused.increment()
            self.refusing = true
            self.closeAfterRefusal = request.headerFields[.connection]?.lowercased() == "close"
            return
        }
        self.admit(request, pool: pool, context: context)
        self.release(first, rest, context: context)
    }

    /// Sends a held body on, in order.
    private func release(_ first: ByteBuffer?, _ rest: [ByteBuffer], context: ChannelHandlerContext) {
        if let first { context.fireChannelRead(self.wrapInboundOut(.body(first))) }
        for part in rest { context.fireChannelRead(self.wrapInboundOut(.body(part))) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), !self.answering.isEmpty {
            self.answering.removeFirst()?.leave()
            self.ledger?.answered += 1
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.leaveAll()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.leaveAll()
    }

    private func leaveAll() {
        for pool in self.answering { pool?.leave() }
        self.answering.removeAll()
        self.held = nil
    }
}
