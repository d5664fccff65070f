import HTTPTypes
import Hummingbird
import Metrics
import Synchronization

/// `pollwire_http_requests_total{route,method,status}` and
/// `pollwire_http_request_duration_seconds{route,method}`; `route` is the route template
/// (`/v1/polls/{id}/votes`), never the raw path, so label values stay bounded.
struct RouteMetricsMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    final class Instruments: Sendable {
        struct Key: Hashable {
            var route: String
            var method: String
            var status: Int
        }

        let factory: any MetricsFactory
        let counters = Mutex<[Key: Counter]>([:])
        let timers = Mutex<[Key: Metrics.Timer]>([:])

        init(factory: any MetricsFactory) {
            self.factory = factory
        }

        func record(route: String, method: String, status: Int, nanoseconds: Int64) {
            let key = Key(route: route, method: method, status: status)
            let counter = self.counters.withLock { counters in
                if let counter = counters[key] { return counter }
                let counter = Counter(
                    label: "pollwire_http_requests_total",
                    dimensions: [("route", route), ("method", method), ("status", String(status))],
                    factory: self.factory)
                counters[key] = counter
                return counter
            }
            counter.increment()
            let timerKey = Key(route: route, method: method, status: 0)
            let timer = self.timers.withLock { timers in
                if let timer = timers[timerKey] { return timer }
                let timer = Metrics.Timer(
                    label: "pollwire_http_request_duration_seconds",
                    dimensions: [("route", route), ("method", method)], factory: self.factory)
                timers[timerKey] = timer
                return timer
            }
            timer.recordNanoseconds(nanoseconds)
        }
    }

    let instruments: Instruments
    static let knownMethods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .patch, .delete, .options]

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        self.instruments.record(
            route: route, method: Self.knownMethods.contains(request.method) ? request.method.rawValue : "other",
            status: response.status.code,
            nanoseconds: Int64((ContinuousClock.now - started) / .nanoseconds(1)))
        return response
    }
}
