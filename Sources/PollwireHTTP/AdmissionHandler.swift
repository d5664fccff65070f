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
/// response, and never becomes a `Request`, a task or a trip through the router. A request is
/// in flight from its head until its response's end is written, including the time it waits
/// for a task, which is what grows when the server falls behind.
///
/// The ingest queue has its own bound (`ingest.queueCapacity`): an admitted vote may still get
/// 503 `overloaded` when the writer is behind.
final class Admission: Sendable {
    final class Pool: Sendable {
        let limit: Int
        let inFlight = Atomic<Int>(0)
        let refused: Counter

        init(limit: Int, name: String, factory: any MetricsFactory) {
            self.limit = limit
            self.refused = Counter(
                label: "pollwire_admission_refused_total", dimensions: [("pool", name)], factory: factory)
        }

        var isFull: Bool { self.inFlight.load(ordering: .relaxed) >= self.limit }
        func enter() { self.inFlight.wrappingAdd(1, ordering: .relaxed) }
        func leave() { self.inFlight.wrappingSubtract(1, ordering: .relaxed) }
    }

    let voters: Pool
    let owners: Pool
    /// The refusal, prepared once: head and body.
    let head: HTTPResponse
    let body: ByteBuffer

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
    }

    /// The pool a request counts in; nil for the routes never refused.
    func pool(for request: HTTPRequest) -> Pool? {
        switch request.path {
        case "/healthz", "/readyz", "/metrics": return nil
        default: return request.headerFields[.authorization] == nil ? self.voters : self.owners
        }
    }
}

/// Counts a connection's (or HTTP/2 stream's) requests in their admission pool and refuses one
/// beyond its pool's cap with the prepared 503: the request's parts are dropped and the router
/// never sees it. A refusal is only answered when no earlier request of the connection is still
/// being answered, so responses keep their order.
final class AdmissionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let admission: Admission
    /// The pools of the requests being answered, oldest first (more than one only when a client
    /// pipelines); each leaves its pool when its response ends.
    private var answering: [Admission.Pool?] = []
    /// Dropping the parts of a refused request until its end.
    private var refusing = false
    private var closeAfterRefusal = false

    init(admission: Admission) {
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            let pool = self.admission.pool(for: request)
            if let pool, pool.isFull, self.answering.isEmpty {
                pool.refused.increment()
                self.refusing = true
                self.closeAfterRefusal = request.headerFields[.connection]?.lowercased() == "close"
                return
            }
            pool?.enter()
            self.answering.append(pool)
            context.fireChannelRead(data)
        case .body:
            if !self.refusing { context.fireChannelRead(data) }
        case .end:
            guard self.refusing else {
                context.fireChannelRead(data)
                return
            }
            self.refusing = false
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

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), !self.answering.isEmpty {
            self.answering.removeFirst()?.leave()
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
    }
}
