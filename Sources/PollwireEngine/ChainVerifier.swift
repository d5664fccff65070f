import Foundation
public import PollwireCore

/// One stored ballot as the chain and the recount read it.
public struct ChainedBallot: Sendable, Equatable {
    /// Its place in the store's append-only order.
    public var sequence: Int64
    public var voter: String?
    public var revision: Int64
    /// The time it was stored, in microseconds since 1970, as its digest covers it.
    public var storedAtMicros: Int64
    /// The event time it was sent with, if any.
    public var castAt: VoteCommand.CastAt?
    public var answers: String
    /// The counters it added (`StoredKeys`).
    public var keys: String
    /// Its stored chain hash, position and shard (nil: not chained).
    public var chain: ChainHash?
    public var position: Int64?
    public var shard: Int32?

    public init(
        sequence: Int64, voter: String?, revision: Int64, storedAtMicros: Int64, answers: String, keys: String,
        chain: ChainHash?, position: Int64?, shard: Int32?, castAt: VoteCommand.CastAt? = nil
    ) {
        self.sequence = sequence
        self.voter = voter
        self.revision = revision
        self.storedAtMicros = storedAtMicros
        self.castAt = castAt
        self.answers = answers
        self.keys = keys
        self.chain = chain
        self.position = position
        self.shard = shard
    }
}

extension ChainedBallot {
    /// The digest of its canonical bytes (`BallotChain.digest`), as the ballot of `poll`.
    public func digest(poll: String) -> ChainHash {
        BallotChain.digest(
            poll: poll, voter: self.voter, revision: self.revision, storedAtMicros: self.storedAtMicros,
            answers: self.answers, keys: self.keys, castAt: self.castAt)
    }
}

/// The first thing about a poll's stored ballots that does not fit.
public struct ChainProblem: Error, Equatable, CustomStringConvertible {
    public var poll: String
    /// The ballot (store sequence) where it shows, when one ballot is to blame.
    public var sequence: Int64?
    public var message: String

    public var description: String {
        "poll \(self.poll): " + (self.sequence.map { "ballot \($0): " } ?? "") + self.message
    }
}

/// Recomputes a poll's ballot chains and recounts its counters from its ballots, read in the
/// store's order (`pollwire verify`): the first ballot whose stored hash is not what its bytes
/// and its predecessor make (an edit, a reorder), whose position skips or repeats (a delete, an
/// insert), or the end of a chain short of the head the store publishes, or counters that are
/// not the recount.
public struct ChainVerifier {
    public let poll: String
    /// The heads the store published when its counters were read: ballots past them are newer
    /// than that read, and left out.
    public let heads: [Int32: ChainLink]
    private var chains: [Int32: ChainLink] = [:]
    private var latest: [String: String] = [:]
    private var recount: [TallyKey: Int64] = [:]
    private var windows = CastWindows.Recount()
    public private(set) var ballots = 0

    public init(poll: String, heads: [Int32: ChainLink]) {
        self.poll = poll
        self.heads = heads
    }

    /// Checks the next ballot in store order.
    public mutating func add(_ ballot: ChainedBallot) throws(ChainProblem) {
        if let position = ballot.position, let shard = ballot.shard, position > (self.heads[shard]?.length ?? 0) {
            return  // stored after the counters and heads were read: not part of what is checked
        }
        self.ballots += 1
        self.windows.add(micros: ballot.storedAtMicros, castAt: ballot.castAt, keys: ballot.keys)
        if let voter = ballot.voter {
            self.latest[voter] = ballot.keys
        } else {
            for key in StoredKeys.decode(ballot.keys) { self.recount[key, default: 0] += 1 }
        }
        guard let stored = ballot.chain, let position = ballot.position, let shard = ballot.shard else {
            throw self.problem(ballot, "it has no chain hash: inserted by hand, or stored with chaining off")
        }
        let previous = self.chains[shard] ?? .empty
        guard position == previous.length + 1 else {
            throw self.problem(
                ballot,
                position > previous.length + 1
                    ? "it is at position \(position) of shard \(shard), where \(previous.length + 1) comes next: "
                        + "\(position - previous.length - 1) ballot(s) before it are missing"
                    : "it is at position \(position) of shard \(shard), which an earlier ballot holds: "
                        + "inserted, or moved")
        }
        let hash = BallotChain.link(previous.head, ballot.digest(poll: self.poll))
        guard hash == stored else {
            throw self.problem(
                ballot,
                "its stored hash is not what its bytes and the ballot before it make (position \(position) of shard "
                    + "\(shard)): it was edited, or moved")
        }
        self.chains[shard] = ChainLink(length: position, head: hash)
    }

    /// Checks the chains' ends against the heads the store publishes, and the counters against
    /// the recount.
    public func finish(tally: Tally) throws(ChainProblem) {
        for shard in Set(self.heads.keys).union(self.chains.keys).sorted() {
            let head = self.heads[shard] ?? .empty
            let chain = self.chains[shard] ?? .empty
            if chain.length < head.length {
                throw ChainProblem(
                    poll: self.poll, sequence: nil,
                    message:
                        "shard \(shard) ends at position \(chain.length), but its head says \(head.length): the last "
                        + "\(head.length - chain.length) ballot(s) are missing")
            }
            if chain != head {
                throw ChainProblem(
                    poll: self.poll, sequence: nil,
                    message: "shard \(shard)'s head is \(head.head) at \(head.length), the ballots make \(chain.head) "
                        + "at \(chain.length)")
            }
        }
        var counts = self.recount
        for keys in self.latest.values {
            for key in StoredKeys.decode(keys) { counts[key, default: 0] += 1 }
        }
        counts = counts.filter { $0.value != 0 }
        let stored = tally.counts.filter { $0.value != 0 }
        if counts != stored {
            let differing = Set(counts.keys).union(stored.keys).sorted().first { counts[$0] != stored[$0] }!
            throw ChainProblem(
                poll: self.poll, sequence: nil,
                message:
                    "the counter \(differing.question)/\(differing.key) is \(stored[differing] ?? 0), a recount of the "
                    + "ballots makes \(counts[differing] ?? 0)")
        }
    }

    /// Checks the stored window counts (`WindowCount`) of the seconds before `cutoff` against a
    /// recount of the ballots cast in them.
    public func finish(windows stored: [WindowCount], before cutoff: Int64) throws(ChainProblem) {
        let recounted = self.windows.rows(before: cutoff)
        let stored = stored.filter { $0.second < cutoff && $0.count != 0 }
        guard recounted != stored else { return }
        // The first second where the two differ, and what each says of it.
        let seconds = Set(recounted.map(\.second)).union(stored.map(\.second)).sorted()
        let second = seconds.first { second in
            recounted.filter { $0.second == second } != stored.filter { $0.second == second }
        }!
        func ballots(_ rows: [WindowCount]) -> Int64 {
            rows.first { $0.second == second && $0.key == .ballots }?.count ?? 0
        }
        let time = Date(timeIntervalSince1970: TimeInterval(second)).formatted(.iso8601)
        throw ChainProblem(
            poll: self.poll, sequence: nil,
            message:
                "the window counts of second \(second) (\(time)) hold \(ballots(stored)) ballot(s), a recount of the "
                + "ballots cast in it makes \(ballots(recounted)) (or their counters differ)")
    }

    /// The head the chains make (what results publish).
    public var head: ChainHash { BallotChain.head(self.chains) }

    private func problem(_ ballot: ChainedBallot, _ message: String) -> ChainProblem {
        ChainProblem(poll: self.poll, sequence: ballot.sequence, message: message)
    }
}

extension ChainVerifier {
    /// What `verify` found fitting for one poll.
    public struct Verified: Sendable {
        public var poll: String
        public var ballots: Int
        public var head: ChainHash
    }

    /// Verifies every poll of `store` (or only `pollID`), in id order: the chains and a recount
    /// against the heads and counters of one consistent read. Throws the first `ChainProblem`.
    /// Ballots committing while this runs land in the seconds from now on, or, sent with a
    /// `castAt`, up to `latenessSeconds` (`analytics.allowedLatenessSeconds`) before: the
    /// window counts of the seconds before that (with one to spare for a commit stamped before
    /// this read) are complete, and are checked.
    public static func verify(
        _ store: any PollStore, pollID: String? = nil, latenessSeconds: Int64 = 0
    ) async throws -> [Verified] {
        let cutoff = Int64(Date().timeIntervalSince1970.rounded(.down)) - 1 - latenessSeconds
        var polls = try await store.loadPolls(latestTextLimit: 0).sorted { $0.poll.id < $1.poll.id }
        if let pollID {
            polls = polls.filter { $0.poll.id == pollID }
            guard !polls.isEmpty else {
                throw ChainProblem(poll: pollID, sequence: nil, message: "there is no such poll")
            }
        }
        var verified: [Verified] = []
        for stored in polls {
            var verifier = ChainVerifier(poll: stored.poll.id, heads: stored.chains)
            var after: Int64 = 0
            while true {
                let page = try await store.chainedBallots(pollID: stored.poll.id, after: after, limit: 1000)
                for ballot in page { try verifier.add(ballot) }
                guard let last = page.last, page.count == 1000 else { break }
                after = last.sequence
            }
            try verifier.finish(tally: stored.tally)
            try verifier.finish(
                windows: try await store.windowCounts(pollID: stored.poll.id, from: Int64.min, to: cutoff),
                before: cutoff)
            verified.append(Verified(poll: stored.poll.id, ballots: verifier.ballots, head: verifier.head))
        }
        return verified
    }
}
