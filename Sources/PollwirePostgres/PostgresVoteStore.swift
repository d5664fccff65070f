public import Foundation
import Logging
import PollwireCore
public import PollwireEngine
import PostgresNIO

/// `VoteStore` on PostgreSQL: one transaction per group commit, in four round trips whatever
/// the batch size.
///
/// 1. Lock the batch's polls (`SELECT ... FOR UPDATE`, in id order): commits of the same poll
///    from different nodes take turns, so versions and dedupe are decided one at a time.
/// 2. Read the earlier ballots the batch may collide with: idempotency keys and voters, each
///    in one query over arrays (`UNNEST`).
/// 3. Decide every vote in order in memory with `VoteRules.decide`, the rules the embedded store
///    applies too.
/// 4. Write it all in ONE statement of data-modifying CTEs, every table fed from arrays:
///    voters inserted (`ON CONFLICT DO NOTHING RETURNING`, checked) or updated, idempotency
///    keys, the ballots, tallies upserted by aggregated delta, poll versions, and `pg_notify`
///    per changed poll with its version and deltas. COMMIT: then the votes are acknowledged.
public struct PostgresVoteStore: VoteStore {
    let database: PostgresDatabase
    let logger: Logger

    public init(database: PostgresDatabase) {
        self.database = database
        self.logger = database.logger
    }

    public func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        try await self.database.client.withTransaction(logger: self.logger) { connection in
            try await self.commit(votes, at: now, on: connection)
        }
    }

    struct VoterRow {
        var revision: Int64
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
        var poll: [String] = []
        var voter: [String] = []
        var revision: [Int64] = []
        var answers: [String] = []
        var keys: [String] = []
        var version: [Int64] = []

        mutating func append(_ pair: Pair, _ row: VoterRow) {
            self.poll.append(pair.poll)
            self.voter.append(pair.id)
            self.revision.append(row.revision)
            self.answers.append(row.answers)
            self.keys.append(row.keys)
            self.version.append(row.version)
        }
    }

    /// Rows to write, as columns.
    struct Writes {
        var ballotPoll: [String] = []
        var ballotVoter: [String] = []
        var ballotRevision: [Int64] = []
        var ballotKey: [String] = []
        var ballotAnswers: [String] = []
        var ballotKeys: [String] = []
        var ballotVersion: [Int64] = []
        var keyPoll: [String] = []
        var keyID: [String] = []
        var keyAnswers: [String] = []
        var keyVersion: [Int64] = []
    }

    func commit(_ votes: [VoteCommand], at now: Date, on connection: PostgresConnection) async throws -> CommitResult {
        let timestamp = now.timeIntervalSince1970
        var polls = try await self.lockPolls(Set(votes.map(\.pollID)).sorted(), at: timestamp, on: connection)

        var keys: [Pair: (answers: String, version: Int64)] = [:]
        var voters: [Pair: VoterRow] = [:]
        let candidates = votes.filter { polls[$0.pollID]?.open == true }
        let keyPairs = candidates.compactMap { vote in vote.idempotencyKey.map { Pair(poll: vote.pollID, id: $0) } }
        if !keyPairs.isEmpty {
            for try await (poll, key, answers, version) in try await connection.query(
                """
                SELECT i.poll_id, i.key, i.answers, i.version FROM idempotency_keys i
                JOIN UNNEST(\(keyPairs.map(\.poll))::text[], \(keyPairs.map(\.id))::text[]) AS u(poll_id, key)
                  ON i.poll_id = u.poll_id AND i.key = u.key
                """, logger: self.logger
            ).decode((String, String, String, Int64).self) {
                keys[Pair(poll: poll, id: key)] = (answers, version)
            }
        }
        let voterPairs = candidates.compactMap { vote in vote.voter.map { Pair(poll: vote.pollID, id: $0) } }
        if !voterPairs.isEmpty {
            for try await (poll, voter, revision, answers, stored, version) in try await connection.query(
                """
                SELECT v.poll_id, v.voter, v.revision, v.answers, v.keys, v.version FROM voters v
                JOIN UNNEST(\(voterPairs.map(\.poll))::text[], \(voterPairs.map(\.id))::text[]) AS u(poll_id, voter)
                  ON v.poll_id = u.poll_id AND v.voter = u.voter
                """, logger: self.logger
            ).decode((String, String, Int32, String, String, Int64).self) {
                voters[Pair(poll: poll, id: voter)] = VoterRow(
                    revision: Int64(revision), answers: answers, keys: stored, version: version, existed: true)
            }
        }

        var writes = Writes()
        var outcomes: [VoteOutcome] = []
        outcomes.reserveCapacity(votes.count)
        for vote in votes {
            outcomes.append(Self.decide(vote, polls: &polls, keys: &keys, voters: &voters, writes: &writes))
        }

        let changes = polls.sorted { $0.key < $1.key }.compactMap { $0.value.change(pollID: $0.key) }
        if !changes.isEmpty {
            try await self.write(writes, voters: voters, changes: changes, at: now, on: connection)
        }
        return CommitResult(outcomes: outcomes, changes: changes)
    }

    private func lockPolls(
        _ ids: [String], at timestamp: Double, on connection: PostgresConnection
    ) async throws -> [String: BatchedPoll] {
        var polls: [String: BatchedPoll] = [:]
        for try await (id, version, status, opensAt, closesAt) in try await connection.query(
            """
            SELECT id, version, status, opens_at, closes_at FROM polls
            WHERE id = ANY(\(ids)::text[]) ORDER BY id FOR UPDATE
            """, logger: self.logger
        ).decode((String, Int64, String, Double?, Double?).self) {
            let open =
                status == Poll.Status.open.rawValue && (opensAt.map { timestamp >= $0 } ?? true)
                && (closesAt.map { timestamp < $0 } ?? true)
            polls[id] = BatchedPoll(version: version, open: open)
        }
        return polls
    }

    /// One vote's fate, in batch order (`VoteRules`), and the rows it writes.
    static func decide(
        _ vote: VoteCommand, polls: inout [String: BatchedPoll], keys: inout [Pair: (answers: String, version: Int64)],
        voters: inout [Pair: VoterRow], writes: inout Writes
    ) -> VoteOutcome {
        let keyPair = vote.idempotencyKey.map { Pair(poll: vote.pollID, id: $0) }
        let voterPair = vote.voter.map { Pair(poll: vote.pollID, id: $0) }
        var earlier = VoteRules.Earlier()
        if let keyPair { earlier.keyed = keys[keyPair] }
        if let voterPair, let row = voters[voterPair] {
            earlier.voter = (row.revision, row.answers, row.keys, row.version)
        }
        let decision = VoteRules.decide(vote, poll: polls[vote.pollID], earlier: earlier)
        guard case .store(let revision, let replacing) = decision, var poll = polls[vote.pollID] else {
            return VoteRules.outcome(of: decision, version: 0)
        }
        let version = poll.version + 1
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
        poll.count(vote.ballot)
        polls[vote.pollID] = poll
        if let keyPair {
            keys[keyPair] = (answers, version)
            writes.keyPoll.append(keyPair.poll)
            writes.keyID.append(keyPair.id)
            writes.keyAnswers.append(answers)
            writes.keyVersion.append(version)
        }
        writes.ballotPoll.append(vote.pollID)
        writes.ballotVoter.append(vote.voter ?? "")
        writes.ballotRevision.append(revision)
        writes.ballotKey.append(vote.idempotencyKey ?? "")
        writes.ballotAnswers.append(answers)
        writes.ballotKeys.append(stored)
        writes.ballotVersion.append(version)
        return outcome
    }

    /// Every write of the batch in one statement. Nullable columns travel as '' (PostgresNIO
    /// arrays have no NULL elements) and become NULL again with NULLIF.
    private func write(
        _ writes: Writes, voters: [Pair: VoterRow], changes: [PollChange], at now: Date,
        on connection: PostgresConnection
    ) async throws {
        var insert:
            (poll: [String], voter: [String], revision: [Int64], answers: [String], keys: [String], version: [Int64]) =
                ([], [], [], [], [], [])
        var update = insert
        for (pair, row) in voters where row.touched {
            if row.existed {
                update.poll.append(pair.poll)
                update.voter.append(pair.id)
                update.revision.append(row.revision)
                update.answers.append(row.answers)
                update.keys.append(row.keys)
                update.version.append(row.version)
            } else {
                insert.poll.append(pair.poll)
                insert.voter.append(pair.id)
                insert.revision.append(row.revision)
                insert.answers.append(row.answers)
                insert.keys.append(row.keys)
                insert.version.append(row.version)
            }
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
        let notices = changes.map { ChangeNotice(change: $0).payload() }
        let inserted = try await connection.query(
            """
            WITH new_voters AS (
                INSERT INTO voters (poll_id, voter, revision, answers, keys, version)
                SELECT p, v, r::integer, a, k, ver FROM UNNEST(
                    \(insert.poll)::text[], \(insert.voter)::text[], \(insert.revision)::int8[],
                    \(insert.answers)::text[], \(insert.keys)::text[], \(insert.version)::int8[]) AS u(p, v, r, a, k, ver)
                ON CONFLICT DO NOTHING RETURNING 1
            ), changed_voters AS (
                UPDATE voters SET revision = u.r::integer, answers = u.a, keys = u.k, version = u.ver
                FROM UNNEST(
                    \(update.poll)::text[], \(update.voter)::text[], \(update.revision)::int8[],
                    \(update.answers)::text[], \(update.keys)::text[], \(update.version)::int8[]) AS u(p, v, r, a, k, ver)
                WHERE voters.poll_id = u.p AND voters.voter = u.v
            ), new_keys AS (
                INSERT INTO idempotency_keys (poll_id, key, answers, version)
                SELECT * FROM UNNEST(
                    \(writes.keyPoll)::text[], \(writes.keyID)::text[], \(writes.keyAnswers)::text[],
                    \(writes.keyVersion)::int8[])
                ON CONFLICT DO NOTHING
            ), new_ballots AS (
                INSERT INTO ballots (poll_id, voter, revision, idempotency_key, answers, keys, version, created_at)
                SELECT p, NULLIF(v, ''), r::integer, NULLIF(i, ''), a, k, ver, \(now) FROM UNNEST(
                    \(writes.ballotPoll)::text[], \(writes.ballotVoter)::text[], \(writes.ballotRevision)::int8[],
                    \(writes.ballotKey)::text[], \(writes.ballotAnswers)::text[], \(writes.ballotKeys)::text[],
                    \(writes.ballotVersion)::int8[]) AS u(p, v, r, i, a, k, ver)
            ), counted AS (
                INSERT INTO tallies (poll_id, question, key, count)
                SELECT * FROM UNNEST(\(tally.poll)::text[], \(tally.question)::text[], \(tally.key)::text[], \(tally.amount)::int8[])
                ON CONFLICT (poll_id, question, key) DO UPDATE SET count = tallies.count + excluded.count
            ), versions AS (
                UPDATE polls SET version = u.ver
                FROM UNNEST(\(changes.map(\.pollID))::text[], \(changes.map(\.version))::int8[]) AS u(id, ver)
                WHERE polls.id = u.id
            ), notified AS (
                SELECT pg_notify(\(ChangeNotice.channel), n) FROM UNNEST(\(notices)::text[]) AS n
            )
            SELECT (SELECT count(*) FROM new_voters), (SELECT count(*) FROM notified)
            """, logger: self.logger
        ).decode((Int64, Int64).self).first { _ in true }
        // The poll locks make a conflict here impossible; if one happens, roll the batch back
        // rather than acknowledge votes whose dedupe row is missing.
        guard inserted?.0 == Int64(insert.poll.count) else {
            throw PostgresStoreError("a new voter row already existed: the batch is rolled back")
        }
    }
}
