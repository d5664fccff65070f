public import Foundation
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
    /// The time the sender says the ballot was cast (nil: when it was stored, the usual case).
    public var castAt: CastAt?
    /// The allowed lateness (microseconds) `castAt` is judged against again when the ballot
    /// commits (`castAt(committedAt:)`); nil: as judged when it arrived.
    public var latenessMicros: Int64?

    public init(
        pollID: String, voter: String?, idempotencyKey: String?, ballot: Ballot, allowChange: Bool,
        castAt: CastAt? = nil
    ) {
        self.pollID = pollID
        self.voter = voter
        self.idempotencyKey = idempotencyKey
        self.ballot = ballot
        self.allowChange = allowChange
        self.castAt = castAt
    }

    /// A ballot's own event time, sent with it by a batch (an edge or an import), and whether it
    /// came later than the allowed lateness (`analytics.allowedLatenessSeconds`, judged when the
    /// ballot arrived). A ballot in time is counted in its window of `micros`; a late one in the
    /// `late` total of the second it was stored in (`CastWindows.late`). Both are stored with
    /// the ballot, so a recount puts every ballot where the commit did.
    public struct CastAt: Sendable, Equatable {
        /// Microseconds since 1970.
        public var micros: Int64
        public var late: Bool

        public init(micros: Int64, late: Bool) {
            self.micros = micros
            self.late = late
        }
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

extension VoteCommand {
    /// `castAt` as the commit at `micros` stores it: late also when the allowed lateness ran out
    /// between its arrival and the commit, so that a window is final (the watermark has passed
    /// it, `Timeline.watermark`) before any commit that could still add to it.
    public func castAt(committedAt micros: Int64) -> CastAt? {
        guard var castAt = self.castAt else { return nil }
        if let lateness = self.latenessMicros, castAt.micros < micros - lateness { castAt.late = true }
        return castAt
    }
}

extension VoteCommand.CastAt {
    /// How far ahead of the server's clock a `castAt` may be and still count, as the time the
    /// ballot arrived (the sender's clock running ahead); beyond this it is refused.
    public static let maxClockSkewMicros: Int64 = 1_000_000

    /// The event time of a ballot sent with `castAt` that arrived at `arrival`, judged against
    /// `latenessSeconds` (`analytics.allowedLatenessSeconds`): late when older than that, the
    /// arrival time when up to `maxClockSkewMicros` ahead, nil when further in the future.
    public init?(castAt: Date, arrival: Date, latenessSeconds: Int64) {
        let arrived = BallotChain.micros(arrival)
        let seconds = castAt.timeIntervalSince1970
        // Far outside any clock (before 1970 or after the year 3000) is refused as the future is.
        guard Timeline.representableSeconds.contains(seconds) else { return nil }
        let micros = BallotChain.micros(castAt)
        guard micros <= arrived + Self.maxClockSkewMicros else { return nil }
        self.init(micros: min(micros, arrived), late: micros < arrived - latenessSeconds * 1_000_000)
    }
}
