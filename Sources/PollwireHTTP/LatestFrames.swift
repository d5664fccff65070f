import PollwireEngine

/// The write state of one live viewer on its event loop: the last version written per poll,
/// and at most ONE pending frame per poll while the channel is not writable. A newer frame
/// replaces the pending one, so a slow viewer skips versions and never builds a backlog.
struct LatestFrames {
    private var pending: [String: LiveFrame] = [:]
    private var lastSent: [String: (version: Int64, hidden: Bool)] = [:]

    /// Whether `frame` differs from what was last written for its poll.
    func isNew(_ frame: LiveFrame) -> Bool {
        guard let last = self.lastSent[frame.pollID] else { return true }
        return last.version != frame.version || last.hidden != frame.hidden
    }

    /// Keeps `frame` until the channel is writable; true when it replaced an unwritten one.
    mutating func hold(_ frame: LiveFrame) -> Bool {
        self.pending.updateValue(frame, forKey: frame.pollID) != nil
    }

    /// The frames held while the channel was not writable, oldest poll order not kept.
    mutating func takePending() -> [LiveFrame] {
        defer { self.pending.removeAll(keepingCapacity: true) }
        return Array(self.pending.values)
    }

    var hasPending: Bool { !self.pending.isEmpty }

    mutating func sent(_ frame: LiveFrame) {
        self.lastSent[frame.pollID] = (frame.version, frame.hidden)
    }

    mutating func forget(_ pollID: String) {
        self.pending.removeValue(forKey: pollID)
        self.lastSent.removeValue(forKey: pollID)
    }

    mutating func removeAll() {
        self.pending.removeAll()
        self.lastSent.removeAll()
    }
}
