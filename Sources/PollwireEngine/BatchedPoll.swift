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
    /// What the batch's stored ballots add to their second's window counts (`WindowCount`):
    /// their keys that windows count (`CastWindows.counts`). Nothing is taken back on a change.
    public var cast: [TallyKey: Int64] { self.added.filter { CastWindows.counts($0.key) } }
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

    /// Counts a stored ballot: its counters, and its text answers for the latest-answers list.
    public mutating func count(_ ballot: Ballot) {
        for key in ballot.keys { self.added[key, default: 0] += 1 }
        for (question, answer) in ballot.answers {
            if case .text(let text) = answer { self.texts.append(TextAnswer(question: question, text: text)) }
        }
        self.stored = true
    }

    /// Takes back what a replaced ballot added (its stored keys).
    public mutating func uncount(_ keys: [TallyKey]) {
        for key in keys { self.removed[key, default: 0] += 1 }
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
