import Metrics

/// The ingestor's metrics: `pollwire_ingest_*` and `pollwire_votes_total{result}`.
struct IngestMetrics: Sendable {
    let batchSize: Recorder
    let queueDepth: Recorder
    let commitDuration: Metrics.Timer
    let commitFailures: Counter
    let accepted: Counter
    let replayed: Counter
    let duplicate: Counter
    let changed: Counter
    let conflict: Counter
    let idempotencyMismatch: Counter
    let pollNotFound: Counter
    let pollNotOpen: Counter

    init(factory: any MetricsFactory) {
        self.batchSize = Recorder(label: "pollwire_ingest_batch_size", aggregate: true, factory: factory)
        self.queueDepth = Recorder(label: "pollwire_ingest_queue_depth", aggregate: false, factory: factory)
        self.commitDuration = Metrics.Timer(label: "pollwire_ingest_commit_duration_seconds", factory: factory)
        self.commitFailures = Counter(label: "pollwire_ingest_commit_failures_total", factory: factory)
        func votes(_ result: String) -> Counter {
            Counter(label: "pollwire_votes_total", dimensions: [("result", result)], factory: factory)
        }
        self.accepted = votes("accepted")
        self.replayed = votes("replayed")
        self.duplicate = votes("duplicate")
        self.changed = votes("changed")
        self.conflict = votes("conflict")
        self.idempotencyMismatch = votes("idempotency_mismatch")
        self.pollNotFound = votes("poll_not_found")
        self.pollNotOpen = votes("poll_not_open")
    }

    func count(_ outcomes: [VoteOutcome]) {
        for outcome in outcomes {
            switch outcome {
            case .accepted(_, let replayed): (replayed ? self.replayed : self.accepted).increment()
            case .duplicate: self.duplicate.increment()
            case .changed: self.changed.increment()
            case .conflict: self.conflict.increment()
            case .idempotencyMismatch: self.idempotencyMismatch.increment()
            case .pollNotFound: self.pollNotFound.increment()
            case .pollNotOpen: self.pollNotOpen.increment()
            }
        }
    }
}
