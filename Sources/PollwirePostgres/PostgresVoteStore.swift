public import Foundation
import Logging
import PollwireCore
public import PollwireEngine
import PostgresNIO
import Synchronization

/// `VoteStore` on PostgreSQL: one transaction per group commit, in at most four round trips
/// whatever the batch size, and no lock that another node's commit of the same poll waits for.
///
/// Each store writes its own shard (a node number from `pollwire_nodes`, taken at its first
/// commit): its commit count per poll in `poll_shards` and its counter deltas in
/// `tally_shards`, rows no other node writes.
///
/// 1. Read the batch's polls `FOR SHARE` (open at commit: a close waits for the commits that saw
///    the poll open; commits do not wait for each other) and this shard's sequence for each.
/// 2. Read the earlier ballots the batch may collide with: idempotency keys and voters, each
///    in one query over arrays (`UNNEST`). The voters found are locked (in key order): a voter
///    voting through two nodes at once is decided one commit after the other.
/// 3. Decide every vote in order in memory with `VoteRules.decide`, the rules the embedded store
///    applies too.
/// 4. Write it all in ONE statement of data-modifying CTEs, every table fed from arrays:
///    voters inserted (`ON CONFLICT DO NOTHING`) or updated where their revision is still the
///    one read, idempotency keys inserted (`ON CONFLICT DO NOTHING`), the ballots, the shard's
///    tallies and sequence, and `pg_notify` per changed poll. COMMIT: then the votes are
///    acknowledged.
///
/// A voter or key that is new at the read may be stored by another node before the write: the
/// unique keys decide, a row count comes back short, the transaction rolls back and the batch is
/// decided again on what is stored now, where that voter is found and locked (at most
/// `maxAttempts` times in all).
public struct PostgresVoteStore: VoteStore {
    let database: PostgresDatabase
    let logger: Logger
    private let node: NodeNumber

    /// Attempts of one batch that lost races with other nodes' commits (or a deadlock) before
    /// the commit fails.
    static let maxAttempts = 8

    /// Whether stored ballots are chained (`BallotChain`); off only to measure what chaining costs.
    let chaining: Bool

    public init(database: PostgresDatabase, chaining: Bool = true) {
        self.database = database
        self.logger = database.logger
        self.node = NodeNumber()
        self.chaining = chaining
    }

    public func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        let node = try await self.node.number(in: self.database)
        var attempt = 1
        while true {
            do {
                return try await self.database.client.withTransaction(logger: self.logger) { connection in
                    try await self.commit(votes, at: now, node: node, on: connection)
                }
            } catch  where attempt < Self.maxAttempts && Self.lostRace(error) {
                self.logger.debug(
                    "a commit raced another node's; deciding it again", metadata: ["attempt": "\(attempt)"])
                attempt += 1
            }
        }
    }

    /// A race with another commit: decided again, not failed.
    struct LostRace: Error {}

    static func lostRace(_ error: any Error) -> Bool {
        let error = (error as? PostgresTransactionError)?.closureError ?? error
        if error is LostRace { return true }
        // deadlock_detected, serialization_failure, unique_violation
        guard let state = (error as? PSQLError)?.serverInfo?[.sqlState] else { return false }
        return ["40P01", "40001", "23505"].contains(state)
    }

    struct VoterRow {
        var revision: Int64
        /// The revision read from the store: an update applies only while it still holds.
        var storedRevision: Int64 = 0
        var answers: String
        var keys: String
        var version: Int64
        /// Whether the row exists in the store (update) or is new in this batch (insert).
        var existed: Bool
        var touched = false
    }

    struct Pair: Hashable {
        let poll: String
        let id: String
    }

    /// Voter rows to insert or update, as columns.
    struct VoterColumns {
        /// Updates carry the revision read (`storedRevision`), inserts do not.
        let isUpdate: Bool
        var poll: [String] = []
        var voter: [String] = []
        var revision: [Int64] = []
        var answers: [String] = []
        var keys: [String] = []
        var version: [Int64] = []
        var storedRevision: [Int64] = []

        mutating func append(_ pair: Pair, _ row: VoterRow) {
            self.poll.append(pair.poll)
            self.voter.append(pair.id)
            self.revision.append(row.revision)
            self.storedRevision.append(row.storedRevision)
            self.answers.append(row.answers)
            self.keys.append(row.keys)
            self.version.append(row.version)
        }
    }

    /// Rows to write, as columns.
    struct Writes {
        /// `ballotCastAt` of a ballot with no event time of its own (arrays carry no NULL).
        static let noCastAt = Int64.min
        var ballotPoll: [String] = []
        var ballotVoter: [String] = []
        var ballotRevision: [Int64] = []
        var ballotKey: [String] = []
        var ballotAnswers: [String] = []
        var ballotKeys: [String] = []
        var ballotVersion: [Int64] = []
        /// The ballot's chain hash (hex; '' when not chained) and position (0 when not chained).
        var ballotChain: [String] = []
        var ballotPosition: [Int64] = []
        /// The ballot's own event time (`noCastAt` when it has none) and late flag.
        var ballotCastAt: [Int64] = []
        var ballotLate: [Bool] = []
        var keyPoll: [String] = []
        var keyID: [String] = []
        var keyAnswers: [String] = []
        var keyVersion: [Int64] = []
        var keyChain: [String] = []
        var keyPosition: [Int64] = []
    }

    func commit(
        _ votes: [VoteCommand], at now: Date, node: Int32, on connection: PostgresConnection
    ) async throws -> CommitResult {
        let micros = BallotChain.micros(now)
        let timestamp = Double(micros) / 1_000_000
        var polls = try await self.readPolls(
            Set(votes.map(\.pollID)).sorted(), node: node, at: timestamp, on: connection)

        var keys: [Pair: (answers: String, version: Int64)] = [:]
        /// Where the ballots stored under the batch's keys are in the chain: what a replay answers.
        var keyReceipts: [Pair: BallotReceipt] = [:]
        var voters: [Pair: VoterRow] = [:]
        let candidates = votes.filter { polls[$0.pollID]?.open == true }
        let keyPairs = candidates.compactMap { vote in vote.idempotencyKey.map { Pair(poll: vote.pollID, id: $0) } }
        if !keyPairs.isEmpty {
            for try await (poll, key, answers, version, chain, position, shard) in try await connection.execute(
                CommitStatements.ReadKeys(pairs: keyPairs), logger: self.logger)
            {
                keys[Pair(poll: poll, id: key)] = (answers, version)
                if let hash = ChainHash(hex: chain), position > 0 {
                    keyReceipts[Pair(poll: poll, id: key)] = BallotReceipt(hash: hash, position: position, shard: shard)
                }
            }
        }
        let voterPairs = candidates.compactMap { vote in vote.voter.map { Pair(poll: vote.pollID, id: $0) } }
        if !voterPairs.isEmpty {
            for try await (poll, voter, revision, answers, stored, version) in try await connection.execute(
                CommitStatements.ReadVoters(pairs: voterPairs),
                logger: self.logger)
            {
                voters[Pair(poll: poll, id: voter)] = VoterRow(
                    revision: Int64(revision), storedRevision: Int64(revision), answers: answers, keys: stored,
                    version: version, existed: true)
            }
        }

        var writes = Writes()
        var outcomes: [VoteOutcome] = []
        outcomes.reserveCapacity(votes.count)
        var receipts: [BallotReceipt?] = []
        if self.chaining { receipts.reserveCapacity(votes.count) }
        for vote in votes {
            let (outcome, receipt) = Self.decide(
                vote, micros: micros, polls: &polls, keys: &keys, keyReceipts: &keyReceipts, voters: &voters,
                writes: &writes)
            outcomes.append(outcome)
            if self.chaining { receipts.append(receipt) }
        }

        let changes = polls.sorted { $0.key < $1.key }.compactMap { $0.value.change(pollID: $0.key) }
        if !changes.isEmpty {
            try await self.write(
                writes, voters: voters, changes: changes, polls: polls, node: node, micros: micros, on: connection)
        }
        return CommitResult(outcomes: outcomes, changes: changes, receipts: receipts)
    }

    /// The batch's polls, shared-locked (a definition change waits for this commit), with this
    /// shard's sequence for each.
    private func readPolls(
        _ ids: [String], node: Int32, at timestamp: Double, on connection: PostgresConnection
    ) async throws -> [String: BatchedPoll] {
        var polls: [String: BatchedPoll] = [:]
        for try await (id, sequence, status, opensAt, closesAt, length, head) in try await connection.execute(
            CommitStatements.ReadPolls(ids: ids, node: node), logger: self.logger)
        {
            let open =
                status == Poll.Status.open.rawValue && (opensAt.map { timestamp >= $0 } ?? true)
                && (closesAt.map { timestamp < $0 } ?? true)
            let chain = self.chaining ? ChainLink(length: length, head: ChainHash(hex: head) ?? .zero) : nil
            polls[id] = BatchedPoll(shard: node, sequence: sequence, open: open, chain: chain)
        }
        return polls
    }

    /// One vote's fate, in batch order (`VoteRules`), and the rows it writes.
    static func decide(
        _ vote: VoteCommand, micros: Int64, polls: inout [String: BatchedPoll],
        keys: inout [Pair: (answers: String, version: Int64)], keyReceipts: inout [Pair: BallotReceipt],
        voters: inout [Pair: VoterRow], writes: inout Writes
    ) -> (VoteOutcome, BallotReceipt?) {
        var vote = vote
        // Late also when the lateness ran out between its arrival and now.
        if vote.castAt != nil { vote.castAt = vote.castAt(committedAt: micros) }
        let keyPair = vote.idempotencyKey.map { Pair(poll: vote.pollID, id: $0) }
        let voterPair = vote.voter.map { Pair(poll: vote.pollID, id: $0) }
        var earlier = VoteRules.Earlier()
        if let keyPair { earlier.keyed = keys[keyPair] }
        if let voterPair, let row = voters[voterPair] {
            earlier.voter = (row.revision, row.answers, row.keys, row.version)
        }
        let decision = VoteRules.decide(vote, poll: polls[vote.pollID], earlier: earlier)
        guard case .store(let revision, let replacing) = decision, var poll = polls[vote.pollID] else {
            let outcome = VoteRules.outcome(of: decision, version: 0)
            // A replay answers as the first time, with the stored ballot's place.
            return (outcome, outcome.isReplay ? keyPair.flatMap { keyReceipts[$0] } : nil)
        }
        let version = poll.sequence + 1
        let answers = vote.ballot.canonical
        let stored = StoredKeys.encode(vote.ballot.keys)
        if let replacing { poll.uncount(StoredKeys.decode(replacing)) }
        if let voterPair {
            var row =
                voters[voterPair]
                ?? VoterRow(revision: 0, answers: answers, keys: stored, version: version, existed: false)
            row.revision = revision
            row.answers = answers
            row.keys = stored
            row.version = version
            row.touched = true
            voters[voterPair] = row
        }
        let outcome = VoteRules.outcome(of: decision, version: version)
        poll.count(vote.ballot, castAt: vote.castAt)
        var receipt: BallotReceipt?
        if poll.chain != nil {
            receipt = poll.link(
                BallotChain.digest(
                    poll: vote.pollID, voter: vote.voter, revision: revision, storedAtMicros: micros, answers: answers,
                    keys: stored, castAt: vote.castAt))
            if let receipt { poll.append(receipt) }
        }
        polls[vote.pollID] = poll
        if let keyPair {
            keys[keyPair] = (answers, version)
            if let receipt { keyReceipts[keyPair] = receipt }
            writes.keyPoll.append(keyPair.poll)
            writes.keyID.append(keyPair.id)
            writes.keyAnswers.append(answers)
            writes.keyVersion.append(version)
            writes.keyChain.append(receipt?.hash.hex ?? "")
            writes.keyPosition.append(receipt?.position ?? 0)
        }
        writes.ballotPoll.append(vote.pollID)
        writes.ballotVoter.append(vote.voter ?? "")
        writes.ballotRevision.append(revision)
        writes.ballotKey.append(vote.idempotencyKey ?? "")
        writes.ballotAnswers.append(answers)
        writes.ballotKeys.append(stored)
        writes.ballotVersion.append(version)
        writes.ballotChain.append(receipt?.hash.hex ?? "")
        writes.ballotPosition.append(receipt?.position ?? 0)
        writes.ballotCastAt.append(vote.castAt?.micros ?? Writes.noCastAt)
        writes.ballotLate.append(vote.castAt?.late ?? false)
        return (outcome, receipt)
    }

    /// Every write of the batch in one statement (`CommitStatements.Write`). Rows are written in
    /// key order, so that two commits that touch the same voters lock them in the same order.
    private func write(
        _ writes: Writes, voters: [Pair: VoterRow], changes: [PollChange], polls: [String: BatchedPoll],
        node: Int32, micros: Int64, on connection: PostgresConnection
    ) async throws {
        var insert = VoterColumns(isUpdate: false)
        var update = VoterColumns(isUpdate: true)
        for (pair, row) in voters.sorted(by: { ($0.key.poll, $0.key.id) < ($1.key.poll, $1.key.id) }) where row.touched
        {
            if row.existed { update.append(pair, row) } else { insert.append(pair, row) }
        }
        var tally: (poll: [String], question: [String], key: [String], amount: [Int64]) = ([], [], [], [])
        for change in changes {
            for delta in change.deltas {
                tally.poll.append(change.pollID)
                tally.question.append(delta.key.question)
                tally.key.append(delta.key.key)
                tally.amount.append(delta.amount)
            }
        }
        var cast = CommitStatements.WindowColumns()
        let second = CastWindows.second(ofMicros: micros)
        for change in changes {
            for row in polls[change.pollID]?.windowCounts(second: second) ?? [] {
                cast.poll.append(change.pollID)
                cast.second.append(row.second)
                cast.question.append(row.key.question)
                cast.key.append(row.key.key)
                cast.amount.append(row.count)
            }
        }
        let notices = changes.map { ChangeNotice(change: $0).payload() }
        let statement = CommitStatements.Write(
            insert: insert, update: update, writes: writes, micros: micros, tally: tally, cast: cast, node: node,
            changed: (
                changes.map(\.pollID), changes.map(\.sequence), changes.map { $0.chain?.head.hex ?? "" },
                changes.map { $0.chain?.length ?? 0 }
            ), notices: notices)
        let counts = try await connection.execute(statement, logger: self.logger).first { _ in true }
        guard let counts else { throw PostgresStoreError("the commit statement returned no row") }
        // A voter or key another node stored since the read, or a voter it changed: decide again.
        guard counts.0 == insert.poll.count, counts.1 == update.poll.count, counts.2 == writes.keyPoll.count else {
            throw LostRace()
        }
        // Only this shard writes its sequences: a row that did not follow is a node number in
        // use twice, which no retry mends.
        guard counts.3 == changes.count else {
            throw PostgresStoreError("another process writes this node's shard: the batch is rolled back")
        }
    }
}

/// A store's node number, taken from PostgreSQL at its first commit.
final class NodeNumber: Sendable {
    private let number = Mutex<Int32?>(nil)

    func number(in database: PostgresDatabase) async throws -> Int32 {
        if let number = self.number.withLock({ $0 }) { return number }
        let taken = try await database.registerNode()
        return self.number.withLock { number in
            if number == nil { number = taken }
            return number!
        }
    }
}
