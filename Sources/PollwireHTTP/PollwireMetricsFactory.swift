import CoreMetrics
import Prometheus

/// swift-metrics onto the Prometheus registry, as swift-prometheus's `PrometheusMetricsFactory`
/// does, plus a `# HELP` line for every family (`promtool check metrics` asks for one): the
/// text comes from `help`, keyed by metric name. A name missing there gets no help text, and
/// `MetricsTests` fails, so a new metric cannot ship undescribed.
struct PollwireMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let durationBuckets: [Duration]
    let valueBuckets: [Double]
    /// Unregisters what this factory made (the registry's handlers are the same types).
    private let prometheus: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry, durationBuckets: [Duration], valueBuckets: [Double]) {
        self.registry = registry
        self.durationBuckets = durationBuckets
        self.valueBuckets = valueBuckets
        self.prometheus = PrometheusMetricsFactory(registry: registry)
    }

    /// What every metric family means.
    static let help: [String: String] = [
        "pollwire_admission_limit": "Requests in flight admitted at most now, by pool (the voters' cap adapts).",
        "pollwire_admission_refused_total": "Requests refused by admission control (503), by pool.",
        "pollwire_http_request_duration_seconds":
            "Time the router took to answer a request, by route template and method.",
        "pollwire_http_requests_total": "Requests answered, by route template, method and status.",
        "pollwire_ingest_batch_size": "Ballots per group commit.",
        "pollwire_ingest_commit_duration_seconds": "Time one group commit takes in the store, fsync included.",
        "pollwire_ingest_commit_failures_total": "Group commits the store failed (nothing of them was stored).",
        "pollwire_ingest_queue_depth": "Ballots waiting in the ingest queue.",
        "pollwire_live_commit_to_write_seconds":
            "Time from a vote's commit to its results frame written to a viewer, by transport.",
        "pollwire_live_deliveries_total": "Results frames written to live viewers, by transport.",
        "pollwire_live_offers_total": "Results versions offered to live viewers by the publish tick.",
        "pollwire_live_skipped_total":
            "Results frames skipped for a viewer whose connection was not writable, by transport.",
        "pollwire_live_slow_disconnects_total": "Live viewers closed for staying unwritable past live.stuckSeconds.",
        "pollwire_live_subscribers": "Live viewers connected, by transport.",
        "pollwire_live_window_corrections_total":
            "Live window events sent again because the window changed before it was final.",
        "pollwire_live_window_to_write_seconds":
            "Time from a window's end to its window event written to a viewer, by transport.",
        "pollwire_live_windows_total": "Live window events made when a window ended (one per poll and width).",
        "pollwire_purge_dropped_total": "CDN purges dropped because purge.maxPending polls were already waiting.",
        "pollwire_purge_requests_total": "CDN purge requests sent, by result.",
        "pollwire_ratelimit_limited_total": "Requests refused by a rate limit (429).",
        "pollwire_votes_total": "Votes answered after their commit, by result.",
    ]

    private static func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: Self.help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        self.registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return self.registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions) }
        return self.registry.makeValueHistogram(
            descriptor: Self.descriptor(label), labels: dimensions, buckets: self.valueBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        self.registry.makeDurationHistogram(
            descriptor: Self.descriptor(label), labels: dimensions, buckets: self.durationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) { self.prometheus.destroyCounter(handler) }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        self.prometheus.destroyFloatingPointCounter(handler)
    }

    func destroyRecorder(_ handler: any RecorderHandler) { self.prometheus.destroyRecorder(handler) }

    func destroyMeter(_ handler: any MeterHandler) { self.prometheus.destroyMeter(handler) }

    func destroyTimer(_ handler: any TimerHandler) { self.prometheus.destroyTimer(handler) }
}
