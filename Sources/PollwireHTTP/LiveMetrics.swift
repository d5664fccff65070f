import Metrics
import PollwireEngine
import Synchronization

/// Metrics of one live transport: `pollwire_live_*{transport}`.
final class LiveMetrics: Sendable {
    let subscribers: Gauge
    let deliveries: Counter
    let skipped: Counter
    let commitToWrite: Metrics.Timer
    /// Window end -> write of `window` events.
    let windowToWrite: Metrics.Timer
    private let count = Atomic<Int>(0)

    init(transport: String, factory: any MetricsFactory) {
        let dimensions = [("transport", transport)]
        self.subscribers = Gauge(label: "pollwire_live_subscribers", dimensions: dimensions, factory: factory)
        self.deliveries = Counter(label: "pollwire_live_deliveries_total", dimensions: dimensions, factory: factory)
        self.skipped = Counter(label: "pollwire_live_skipped_total", dimensions: dimensions, factory: factory)
        self.commitToWrite = Metrics.Timer(
            label: "pollwire_live_commit_to_write_seconds", dimensions: dimensions, factory: factory)
        self.windowToWrite = Metrics.Timer(
            label: "pollwire_live_window_to_write_seconds", dimensions: dimensions, factory: factory)
    }

    /// One frame written: counts it and records commit -> write latency (window end -> write
    /// for a window).
    func delivered(_ frame: LiveFrame) {
        self.deliveries.increment()
        let nanoseconds = Int64((ContinuousClock.now - frame.committedAt) / .nanoseconds(1))
        switch frame.kind {
        case .results: self.commitToWrite.recordNanoseconds(nanoseconds)
        case .window: self.windowToWrite.recordNanoseconds(nanoseconds)
        }
    }

    func connected() { self.subscribers.record(self.count.add(1, ordering: .relaxed).newValue) }
    func disconnected() { self.subscribers.record(self.count.subtract(1, ordering: .relaxed).newValue) }
}
