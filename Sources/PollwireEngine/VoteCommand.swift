public import PollwireCore

/// One validated ballot on its way to the store.
public struct VoteCommand: Sendable {
    public var pollID: String
    /// The dedupe key: an external voter id or a device id; nil when the poll dedupes nothing.
    public var voter: String?
    /// The client's `Idempotency-Key`, if it sent one.
    public var idempotencyKey: String?
    public var ballot: Ballot
    /// Whether the poll lets a voter replace their ballot.
    public var allowChange: Bool

    public init(pollID: String, voter: String?, idempotencyKey: String?, ballot: Ballot, allowChange: Bool) {
        self.pollID = pollID
        self.voter = voter
        self.idempotencyKey = idempotencyKey
        self.ballot = ballot
        self.allowChange = allowChange
    }
}

/// What became of one vote, decided inside the transaction that stored it.
public enum VoteOutcome: Sendable, Equatable {
    /// Stored and counted; `version` is the poll's version that first includes it.
    /// `replayed` is true when an earlier request with the same `Idempotency-Key` stored it.
    case accepted(version: Int64, replayed: Bool)
    /// The voter's identical ballot was already stored (at `version`); nothing changed.
    case duplicate(version: Int64)
    /// The voter replaced their earlier ballot; the tallies moved from the old to the new one.
    case changed(version: Int64)
    /// The voter already voted differently and the poll does not allow changes.
    case conflict
    /// The `Idempotency-Key` was used before with a different ballot.
    case idempotencyMismatch
    /// The poll does not exist (any more).
    case pollNotFound
    /// The poll is not open for votes at commit time.
    case pollNotOpen
}

extension VoteOutcome {
    /// Whether this answers a retry with the answer its `Idempotency-Key` got first.
    public var isReplay: Bool {
        if case .accepted(_, replayed: true) = self { return true }
        return false
    }
}

/// What one group commit changed for one poll: applied to the TallyBook after the commit.
///
/// A poll's changes come in shards, one per writer: the embedded store is one shard (0); in a
/// cluster every node writes its own (its node number), so that nodes never wait on each other's
/// commits of the same poll. Within a shard `sequence` counts the commits that changed the poll;
/// the poll's version is the sum over its shards (each commit moves it by one).
public struct PollChange: Sendable, Equatable {
    public var pollID: String
    /// The writer whose commit this is (0: the embedded store).
    public var shard: Int32
    /// The shard's commit count for this poll after the commit: 1, 2, 3, ... with no gaps.
    public var sequence: Int64
    /// Aggregated counter changes of the batch.
    public var deltas: [TallyDelta]
    /// Text answers the batch added, oldest first, as (question id, text).
    public var texts: [TextAnswer]
    /// The shard's ballot chain of the poll after the commit (nil: not chained).
    public var chain: ChainLink?

    public init(
        pollID: String, shard: Int32 = 0, sequence: Int64, deltas: [TallyDelta], texts: [TextAnswer],
        chain: ChainLink? = nil
    ) {
        self.pollID = pollID
        self.shard = shard
        self.sequence = sequence
        self.deltas = deltas
        self.texts = texts
        self.chain = chain
    }
}

/// One open-text answer.
public struct TextAnswer: Sendable, Equatable {
    public var question: String
    public var text: String

    public init(question: String, text: String) {
        self.question = question
        self.text = text
    }
}

/// The result of one group commit: an outcome per vote, in order, and the change per poll.
public struct CommitResult: Sendable {
    public var outcomes: [VoteOutcome]
    public var changes: [PollChange]
    /// Per vote, in order, its ballot's place in the chain when this commit stored one (empty
    /// when the store does not chain).
    public var receipts: [BallotReceipt?]

    public init(outcomes: [VoteOutcome], changes: [PollChange], receipts: [BallotReceipt?] = []) {
        self.outcomes = outcomes
        self.changes = changes
        self.receipts = receipts
    }
}
