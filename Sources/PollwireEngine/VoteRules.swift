import PollwireCore

/// The fate of one vote in a group commit, decided the same way by every store.
///
/// A store reads what the vote may collide with (the earlier use of its `Idempotency-Key`, the
/// voter's latest ballot), asks `decide`, and carries the decision out: stores it, stores a new
/// revision and takes the old one's counts back, or stores nothing. The order of the rules is
/// the API's: the poll must exist and be open at commit time; a replayed key answers what it
/// answered first (or refuses a different ballot under it); a voter's identical ballot is a
/// duplicate; a different one is a change where the poll allows it and a conflict where not.
public enum VoteRules {
    /// What the store holds that a vote may collide with.
    public struct Earlier: Sendable {
        /// The ballot stored under the vote's `Idempotency-Key`, and the version it went in at.
        public var keyed: (answers: String, version: Int64)?
        /// The voter's latest ballot: its revision, canonical answers, stored keys and version.
        public var voter: (revision: Int64, answers: String, keys: String, version: Int64)?

        public init(
            keyed: (answers: String, version: Int64)? = nil,
            voter: (revision: Int64, answers: String, keys: String, version: Int64)? = nil
        ) {
            self.keyed = keyed
            self.voter = voter
        }
    }

    /// What the store does with the vote.
    public enum Decision: Sendable, Equatable {
        /// Store the ballot as the voter's `revision` (0 for a first ballot) at the poll's next
        /// version; when `replacing` is set, the earlier ballot's stored keys are uncounted.
        case store(revision: Int64, replacing: String?)
        /// Store nothing; the vote's answer is this outcome.
        case answer(VoteOutcome)
    }

    /// The decision for `vote` on `poll` (nil: the poll does not exist) given what is `earlier`.
    public static func decide(_ vote: VoteCommand, poll: BatchedPoll?, earlier: Earlier) -> Decision {
        guard let poll else { return .answer(.pollNotFound) }
        guard poll.open else { return .answer(.pollNotOpen) }
        if vote.idempotencyKey != nil, let keyed = earlier.keyed {
            return .answer(
                keyed.answers == vote.ballot.canonical
                    ? .accepted(version: keyed.version, replayed: true) : .idempotencyMismatch)
        }
        guard vote.voter != nil, let latest = earlier.voter else { return .store(revision: 0, replacing: nil) }
        if latest.answers == vote.ballot.canonical { return .answer(.duplicate(version: latest.version)) }
        guard vote.allowChange else { return .answer(.conflict) }
        return .store(revision: latest.revision + 1, replacing: latest.keys)
    }

    /// The outcome of a stored ballot at `version`.
    public static func outcome(of decision: Decision, version: Int64) -> VoteOutcome {
        switch decision {
        case .store(_, replacing: nil): .accepted(version: version, replayed: false)
        case .store: .changed(version: version)
        case .answer(let outcome): outcome
        }
    }
}
