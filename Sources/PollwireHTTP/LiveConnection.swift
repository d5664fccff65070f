import Metrics
import NIOCore
import PollwireEngine
import Synchronization

/// One live viewer's slot between the Hub and its connection: holds at most ONE pending
/// frame per poll, so a viewer that cannot keep up skips versions (the latest wins) and never
/// builds a backlog. Used by SSE; the WebSocket endpoint does the same inside its NIO handler.
///
/// The Hub offers without blocking; the connection's write loop takes items with `next()`.
final class LiveConnection: LiveSubscriber {
    enum Item {
        case frame(LiveFrame)
        case ping
    }

    struct State {
        /// The newest unwritten frame of each poll.
        var pending: [String: LiveFrame] = [:]
        var pendingPing = false
        var waiter: CheckedContinuation<Item?, Never>?
        var closed = false
        var writingSince: ContinuousClock.Instant?
        /// The (version, hidden) last written per poll, so the same update is never sent twice.
        var lastSent: [String: (Int64, Bool)] = [:]
        /// Polls for which the viewer showed a valid receipt.
        var receipts: Set<String> = []
    }

    private let state = Mutex(State())
    private let channel: any Channel
    let metrics: LiveMetrics

    init(channel: any Channel, metrics: LiveMetrics) {
        self.channel = channel
        self.metrics = metrics
    }

    // MARK: Hub side

    func offer(_ frame: LiveFrame) {
        let waiter: CheckedContinuation<Item?, Never>? = self.state.withLock { state in
            guard !state.closed else { return nil }
            if let (version, hidden) = state.lastSent[frame.pollID], version == frame.version, hidden == frame.hidden {
                return nil
            }
            guard let waiter = state.waiter else {
                if state.pending.updateValue(frame, forKey: frame.pollID) != nil { self.metrics.skipped.increment() }
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: .frame(frame))
    }

    func ping() {
        let waiter: CheckedContinuation<Item?, Never>? = self.state.withLock { state in
            guard !state.closed, state.pending.isEmpty else { return nil }
            guard let waiter = state.waiter else {
                state.pendingPing = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: .ping)
    }

    var writingSince: ContinuousClock.Instant? { self.state.withLock { $0.writingSince } }

    func close(reason: String) {
        let (waiter, writing): (CheckedContinuation<Item?, Never>?, Bool) = self.state.withLock { state in
            state.closed = true
            state.pending.removeAll()
            defer { state.waiter = nil }
            return (state.waiter, state.writingSince != nil)
        }
        waiter?.resume(returning: nil)
        // A write stuck on a viewer that does not read only ends when the socket does.
        if writing { self.channel.close(promise: nil) }
    }

    func hasVoted(_ pollID: String) -> Bool { self.state.withLock { $0.receipts.contains(pollID) } }

    // MARK: Connection side

    /// Records whether the viewer showed a valid receipt for `pollID`.
    func setReceipt(_ valid: Bool, for pollID: String) {
        self.state.withLock { state in
            if valid { state.receipts.insert(pollID) } else { state.receipts.remove(pollID) }
        }
    }

    /// The next item to write; nil once closed.
    func next() async -> Item? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Item?, Never>) in
            let ready: Item?? = self.state.withLock { state in
                if state.closed { return .some(nil) }
                if let pollID = state.pending.keys.first, let frame = state.pending.removeValue(forKey: pollID) {
                    return .some(.frame(frame))
                }
                if state.pendingPing {
                    state.pendingPing = false
                    return .some(.ping)
                }
                state.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Whether `frame` is news to this viewer.
    func isNew(_ frame: LiveFrame) -> Bool {
        self.state.withLock { state in
            guard let (version, hidden) = state.lastSent[frame.pollID] else { return true }
            return version != frame.version || hidden != frame.hidden
        }
    }

    /// Runs `write` for `frame`, tracking how long it takes (the Hub closes a viewer stuck
    /// longer than its deadline) and the commit -> write latency.
    func writing(_ frame: LiveFrame?, _ write: () async throws -> Void) async throws {
        self.state.withLock { $0.writingSince = .now }
        defer { self.state.withLock { $0.writingSince = nil } }
        try await write()
        if let frame {
            self.state.withLock { $0.lastSent[frame.pollID] = (frame.version, frame.hidden) }
            self.metrics.deliveries.increment()
            self.metrics.commitToWrite.recordNanoseconds(
                Int64((ContinuousClock.now - frame.committedAt) / .nanoseconds(1)))
        }
    }
}
