import Hummingbird
import NIOCore
import PollwireEngine
import Prometheus

/// `/healthz` (the process answers), `/readyz` (tallies loaded, votes accepted, and in a
/// cluster: the change feed synced and the store's circuit breaker closed) and
/// `/metrics` (Prometheus text format).
struct OperationsController {
    let book: TallyBook
    let ingestor: VoteIngestor
    let feed: (any ChangeFeed)?
    let registry: PrometheusCollectorRegistry

    func addRoutes(to router: Router<PollwireRequestContext>) {
        router.get("/healthz") { _, _ in
            Response.json(.ok, "{\"status\":\"ok\"}", headers: [.cacheControl: "no-store"])
        }
        router.get("/readyz") { _, _ in
            guard self.book.isLoaded else {
                throw APIError(.serviceUnavailable, .notReady, "tallies are still loading", retryAfter: 1)
            }
            guard self.ingestor.isAccepting else {
                throw APIError(.serviceUnavailable, .shuttingDown, "the server is shutting down", retryAfter: 1)
            }
            guard self.feed?.isSynced ?? true else {
                throw APIError(
                    .serviceUnavailable, .storeUnavailable, "not listening to the store's changes: results are stale",
                    retryAfter: 1)
            }
            guard self.ingestor.isStoreAvailable else {
                throw APIError(
                    .serviceUnavailable, .storeUnavailable, "the store failed repeatedly: votes are refused",
                    retryAfter: 1)
            }
            return Response.json(.ok, "{\"status\":\"ready\"}", headers: [.cacheControl: "no-store"])
        }
        router.get("/metrics") { _, _ in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16 * 1024)
            self.registry.emit(into: &bytes)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }
}
