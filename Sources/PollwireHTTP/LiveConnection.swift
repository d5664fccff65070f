import Metrics
import NIOCore
import PollwireEngine
import Synchronization

/// One live viewer's slot between the Hub and its connection: holds at most ONE pending item,
/// so a viewer that cannot keep up skips versions (the latest wins) and never builds a backlog.
///
/// The Hub offers without blocking; the connection's write loop takes items with `next()`.
final class LiveConnection: LiveSubscriber {
    enum Item {
        case frame(LiveFrame)
        case ping
    }

    struct State {
        var pending: Item?
        var waiter: CheckedContinuation<Item?, Never>?
        var closed = false
        var writingSince: ContinuousClock.Instant?
        /// The (version, hidden) last written, so the same update is never sent twice.
        var lastSent: (Int64, Bool)?
    }

    private let state = Mutex(State())
    let hasVoted: Bool
    private let channel: any Channel
    let metrics: LiveMetrics

    init(hasVoted: Bool, channel: any Channel, metrics: LiveMetrics) {
        self.hasVoted = hasVoted
        self.channel = channel
        self.metrics = metrics
    }

    // MARK: Hub side

    func offer(_ frame: LiveFrame) {
        let waiter: CheckedContinuation<Item?, Never>? = self.state.withLock { state in
            guard !state.closed else { return nil }
            if let (version, hidden) = state.lastSent, version == frame.version, hidden == frame.hidden { return nil }
            if case .frame = state.pending { self.metrics.skipped.increment() }
            guard let waiter = state.waiter else {
                state.pending = .frame(frame)
                return nil
            }
            state.waiter = nil
            state.pending = nil
            return waiter
        }
        waiter?.resume(returning: .frame(frame))
    }

    func ping() {
        let waiter: CheckedContinuation<Item?, Never>? = self.state.withLock { state in
            guard !state.closed, state.pending == nil else { return nil }
            guard let waiter = state.waiter else {
                state.pending = .ping
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: .ping)
    }

    var writingSince: ContinuousClock.Instant? { self.state.withLock { $0.writingSince } }

    func close(reason: String) {
        let waiter: CheckedContinuation<Item?, Never>? = self.state.withLock { state in
            state.closed = true
            state.pending = nil
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
        // A write stuck on a viewer that does not read only ends when the socket does.
        if self.writingSince != nil { self.channel.close(promise: nil) }
    }

    // MARK: Connection side

    /// The next item to write; nil once closed.
    func next() async -> Item? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Item?, Never>) in
            let ready: Item?? = self.state.withLock { state in
                if state.closed { return .some(nil) }
                if let pending = state.pending {
                    state.pending = nil
                    return .some(pending)
                }
                state.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Runs `write` for `frame`, tracking how long it takes (the Hub closes a viewer stuck
    /// longer than its deadline) and the commit -> write latency.
    func writing(_ frame: LiveFrame?, _ write: () async throws -> Void) async throws {
        self.state.withLock { $0.writingSince = .now }
        defer { self.state.withLock { $0.writingSince = nil } }
        try await write()
        if let frame {
            self.state.withLock { $0.lastSent = (frame.version, frame.hidden) }
            self.metrics.deliveries.increment()
            self.metrics.commitToWrite.recordNanoseconds(
                Int64((ContinuousClock.now - frame.committedAt) / .nanoseconds(1)))
        }
    }

    /// Whether `frame` is news to this viewer.
    func isNew(_ frame: LiveFrame) -> Bool {
        self.state.withLock { state in
            guard let (version, hidden) = state.lastSent else { return true }
            return version != frame.version || hidden != frame.hidden
        }
    }
}
