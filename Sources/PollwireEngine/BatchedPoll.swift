public import PollwireCore

/// One poll while a store writes a group commit: its shard's commit count (`sequence`, see
/// `PollChange`) and whether it takes votes (read at the start of the transaction), and what the batch's ballots add to it. Both stores decide
/// votes row by row and count them here; `change` is what the TallyBook then applies.
public struct BatchedPoll: Sendable {
    public var shard: Int32
    public var sequence: Int64
    public var open: Bool
    /// What the batch's stored ballots add, and what the ballots they replaced took away: kept
    /// apart so that window counts (adds only) cost no second count per key.
    private var added: [TallyKey: Int64] = [:]
    private var removed: [TallyKey: Int64] = [:]
    public private(set) var texts: [TextAnswer] = []
    /// Ballots that carry their own event time (`VoteCommand.CastAt`): what they add to windows
    /// other than the commit's second, the keys of theirs to leave out of that second, and how
    /// many came too late for any window.
    private var elsewhere: [WindowSlot: Int64] = [:]
    private var displaced: [TallyKey: Int64] = [:]
    private var late: Int64 = 0
    /// Whether a ballot of the batch was stored (the poll's version moves).
    public private(set) var stored = false
    /// This shard's ballot chain of the poll (nil: the store does not chain ballots).
    public var chain: ChainLink?

    public init(shard: Int32 = 0, sequence: Int64, open: Bool, chain: ChainLink? = nil) {
        self.shard = shard
        self.sequence = sequence
        self.open = open
        self.chain = chain
    }

    /// The place a ballot with `digest` (`BallotChain.digest`) takes when it is stored next;
    /// nil when the store does not chain. `append` it once the ballot is stored.
    public func link(_ digest: ChainHash) -> BallotReceipt? {
        guard let next = self.chain?.appending(digest) else { return nil }
        return BallotReceipt(hash: next.head, position: next.length, shard: self.shard)
    }

    /// Moves the chain to a stored ballot's place (from `link`).
    public mutating func append(_ receipt: BallotReceipt) {
        self.chain = ChainLink(length: receipt.position, head: receipt.hash)
    }

    /// Counts a stored ballot: its counters, its window (the commit's second, or its own
    /// `castAt`), and its text answers for the latest-answers list.
    public mutating func count(_ ballot: Ballot, castAt: VoteCommand.CastAt? = nil) {
        for key in ballot.keys { self.added[key, default: 0] += 1 }
        if let castAt {
            let second = CastWindows.second(ofMicros: castAt.micros)
            for key in ballot.keys where CastWindows.counts(key) {
                self.displaced[key, default: 0] += 1
                if !castAt.late { self.elsewhere[WindowSlot(second: second, key: key), default: 0] += 1 }
            }
            if castAt.late { self.late += 1 }
        }
        for (question, answer) in ballot.answers {
            if case .text(let text) = answer { self.texts.append(TextAnswer(question: question, text: text)) }
        }
        self.stored = true
    }

    /// Takes back what a replaced ballot added (its stored keys).
    public mutating func uncount(_ keys: [TallyKey]) {
        for key in keys { self.removed[key, default: 0] += 1 }
    }

    /// What the batch's stored ballots add to the window counts (`WindowCount`), the commit
    /// being in `second`: each ballot's keys that windows count (`CastWindows.counts`) in its
    /// second, a late one as `CastWindows.late` in the commit's. Nothing is taken back on a
    /// change. One row per second and key.
    public func windowCounts(second: Int64) -> [WindowCount] {
        var rows: [WindowCount] = []
        for (key, count) in self.added where CastWindows.counts(key) {
            let here = count - (self.displaced[key] ?? 0)
            if here != 0 { rows.append(WindowCount(second: second, key: key, count: here)) }
        }
        guard !self.displaced.isEmpty else { return rows }
        var merged = Dictionary(
            uniqueKeysWithValues: rows.map { (WindowSlot(second: $0.second, key: $0.key), $0.count) })
        merged.merge(self.elsewhere, uniquingKeysWith: +)
        if self.late > 0 { merged[WindowSlot(second: second, key: CastWindows.late), default: 0] += self.late }
        return merged.map { WindowCount(second: $0.key.second, key: $0.key.key, count: $0.value) }
    }

    /// The change the batch made to this poll (its shard's next sequence), or nil when nothing was stored.
    public func change(pollID: String) -> PollChange? {
        guard self.stored else { return nil }
        let net =
            self.removed.isEmpty ? self.added : self.added.merging(self.removed.mapValues { -$0 }, uniquingKeysWith: +)
        let deltas = net.compactMap { $0.value == 0 ? nil : TallyDelta(key: $0.key, amount: $0.value) }
            .sorted { $0.key < $1.key }
        return PollChange(
            pollID: pollID, shard: self.shard, sequence: self.sequence + 1, deltas: deltas, texts: self.texts,
            chain: self.chain)
    }
}

/// One counter in one second.
struct WindowSlot: Hashable {
    var second: Int64
    var key: TallyKey
}
