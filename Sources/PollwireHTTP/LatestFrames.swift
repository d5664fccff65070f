import Metrics
import PollwireEngine
import Synchronization

/// The write state of one live viewer on its event loop: the last version written per poll
/// (and kind: results, windows), and at most ONE pending frame per poll and kind while the
/// channel is not writable. A newer frame replaces the pending one, so a slow viewer skips
/// versions (and windows) and never builds a backlog.
struct LatestFrames {
    struct Key: Hashable {
        var poll: String
        var kind: LiveFrame.Kind

        init(_ frame: LiveFrame) { (self.poll, self.kind) = (frame.pollID, frame.kind) }
        init(_ poll: String, _ kind: LiveFrame.Kind) { (self.poll, self.kind) = (poll, kind) }
    }

    private var pending: [Key: LiveFrame] = [:]
    private var lastSent: [Key: (version: Int64, hidden: Bool)] = [:]

    /// Whether `frame` differs from what was last written for its poll.
    func isNew(_ frame: LiveFrame) -> Bool {
        guard let last = self.lastSent[Key(frame)] else { return true }
        return last.version != frame.version || last.hidden != frame.hidden
    }

    /// Keeps `frame` until the channel is writable; true when it replaced an unwritten one.
    mutating func hold(_ frame: LiveFrame) -> Bool {
        self.pending.updateValue(frame, forKey: Key(frame)) != nil
    }

    /// The frames held while the channel was not writable, oldest poll order not kept.
    mutating func takePending() -> [LiveFrame] {
        defer { self.pending.removeAll(keepingCapacity: true) }
        return Array(self.pending.values)
    }

    var hasPending: Bool { !self.pending.isEmpty }

    mutating func sent(_ frame: LiveFrame) {
        self.lastSent[Key(frame)] = (frame.version, frame.hidden)
    }

    mutating func forget(_ pollID: String) {
        for kind in [LiveFrame.Kind.results, .window] {
            self.pending.removeValue(forKey: Key(pollID, kind))
            self.lastSent.removeValue(forKey: Key(pollID, kind))
        }
    }

    mutating func removeAll() {
        self.pending.removeAll()
        self.lastSent.removeAll()
    }
}

/// The flow control of one live connection: its `LatestFrames` (touched on the connection's
/// event loop only), since when the channel has refused frames (read by the Hub from any
/// thread to find stuck viewers), and the transport's metrics.
final class LiveFlow: @unchecked Sendable {
    private var frames = LatestFrames()
    private let since = Mutex<ContinuousClock.Instant?>(nil)
    let metrics: LiveMetrics

    init(metrics: LiveMetrics) {
        self.metrics = metrics
    }

    /// Since when the channel has not been writable, nil while it is.
    var unwritableSince: ContinuousClock.Instant? { self.since.withLock { $0 } }

    func isNew(_ frame: LiveFrame) -> Bool { self.frames.isNew(frame) }

    var hasPending: Bool { self.frames.hasPending }

    /// Keeps a frame the channel cannot take now; the newest per poll wins.
    func hold(_ frame: LiveFrame) {
        if self.frames.hold(frame) { self.metrics.skipped.increment() }
        self.since.withLock { since in
            if since == nil { since = .now }
        }
    }

    /// The channel is writable again: returns the frames held meanwhile.
    func resume() -> [LiveFrame] {
        self.since.withLock { $0 = nil }
        return self.frames.takePending()
    }

    /// Records a written frame: the version it was, deliveries and commit -> write latency.
    func sent(_ frame: LiveFrame) {
        self.frames.sent(frame)
        self.metrics.delivered(frame)
    }

    func forget(_ pollID: String) { self.frames.forget(pollID) }

    func removeAll() { self.frames.removeAll() }
}
