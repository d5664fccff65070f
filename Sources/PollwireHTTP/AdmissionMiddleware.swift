import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import Synchronization

/// Admission control: a cap on requests in flight, one pool for the audience and one for the
/// owners (requests with an API key), so that a vote flood cannot lock the owners out. Beyond
/// its pool's cap a request gets a prepared 503 with `Retry-After` at once: one atomic add and
/// one subtract, no body read, no decoding. Health, readiness and metrics are never refused.
///
/// The ingest queue has its own bound (`ingest.queueCapacity`): a vote admitted here may still
/// get 503 `overloaded` when the writer is behind.
struct AdmissionMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    final class Pool: Sendable {
        let limit: Int
        let inFlight = Atomic<Int>(0)
        let refused: Counter

        init(limit: Int, name: String, factory: any MetricsFactory) {
            self.limit = limit
            self.refused = Counter(
                label: "pollwire_admission_refused_total", dimensions: [("pool", name)], factory: factory)
        }

        /// Takes a place, or says there is none.
        func enter() -> Bool {
            let now = self.inFlight.wrappingAdd(1, ordering: .relaxed).newValue
            guard now <= self.limit else {
                self.inFlight.wrappingSubtract(1, ordering: .relaxed)
                self.refused.increment()
                return false
            }
            return true
        }

        func leave() {
            self.inFlight.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    let voters: Pool
    let owners: Pool
    let refusal: APIError

    init(settings: AdmissionSettings, factory: any MetricsFactory) {
        self.voters = Pool(limit: settings.maxInFlight, name: "voters", factory: factory)
        self.owners = Pool(limit: settings.maxManagementInFlight, name: "management", factory: factory)
        self.refusal = APIError(
            .serviceUnavailable, .overloaded, "the server is at capacity: retry later",
            retryAfter: settings.retryAfterSeconds)
    }

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        if path == "/healthz" || path == "/readyz" || path == "/metrics" {
            return try await next(request, context)
        }
        let pool = request.headers[.authorization] == nil ? self.voters : self.owners
        guard pool.enter() else {
            return self.refusal.response(allocator: ByteBufferAllocator())
        }
        defer { pool.leave() }
        return try await next(request, context)
    }
}
