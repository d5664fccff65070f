public import Foundation
import GRDB
import GRDBSQLite
import PollwireCore
public import PollwireEngine

/// `VoteStore` on the embedded SQLite database: one transaction per group commit.
///
/// Per ballot: one INSERT (a cached statement; the unique indexes do the dedupe). Only a
/// conflict reads the earlier ballot and asks `VoteRules.decide`, the rules every store applies.
/// Per poll in the batch: one SELECT of its state, one
/// UPSERT per changed counter, one UPDATE of its version. Then one COMMIT: one fsync with
/// `synchronous=FULL`.
public struct SQLiteVoteStore: VoteStore {
    let database: SQLiteDatabase
    /// Whether stored ballots are chained (`BallotChain`); off only to measure what chaining costs.
    let chaining: Bool

    public init(database: SQLiteDatabase, chaining: Bool = true) {
        self.database = database
        self.chaining = chaining
    }

    public func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        let chaining = self.chaining
        return try await self.database.pool.write { db in try Self.commit(votes, at: now, chaining: chaining, in: db) }
    }

    /// The microseconds a stored `created_at` stands for in its ballot's chain digest.
    public static func micros(_ createdAt: Double) -> Int64 {
        Int64((createdAt * 1_000_000).rounded())
    }

    static func commit(
        _ votes: [VoteCommand], at now: Date, chaining: Bool = true, in db: Database
    ) throws -> CommitResult {
        // Whole microseconds: the time the chain digest covers is the time stored.
        let micros = BallotChain.micros(now)
        let timestamp = Double(micros) / 1_000_000
        var polls: [String: BatchedPoll] = [:]
        let selectPoll = try db.cachedStatement(
            sql: "SELECT version, status, opens_at, closes_at, chain_head, chain_length FROM polls WHERE id = ?")
        for vote in votes where polls[vote.pollID] == nil {
            guard let row = try Row.fetchOne(selectPoll, arguments: [vote.pollID]) else { continue }
            let opensAt: Double? = row[2]
            let closesAt: Double? = row[3]
            let open =
                row[1] == Poll.Status.open.rawValue && (opensAt.map { timestamp >= $0 } ?? true)
                && (closesAt.map { timestamp < $0 } ?? true)
            var chain: ChainLink?
            if chaining {
                let head: Data? = row[4]
                chain = ChainLink(length: row[5], head: head.flatMap { ChainHash(bytes: $0) } ?? .zero)
            }
            polls[vote.pollID] = BatchedPoll(sequence: row[0], open: open, chain: chain)
        }

        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO ballots (
                    poll_id, voter, revision, idempotency_key, answers, keys, version, created_at, chain, chain_position,
                    cast_at, late)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                """)
        var outcomes: [VoteOutcome] = []
        outcomes.reserveCapacity(votes.count)
        var receipts: [BallotReceipt?] = []
        if chaining { receipts.reserveCapacity(votes.count) }
        for var vote in votes {
            // Late also when the lateness ran out between its arrival and now.
            if vote.castAt != nil { vote.castAt = vote.castAt(committedAt: micros) }
            guard var poll = polls[vote.pollID], poll.open else {
                outcomes.append(
                    VoteRules.outcome(
                        of: VoteRules.decide(vote, poll: polls[vote.pollID], earlier: .init()), version: 0))
                if chaining { receipts.append(nil) }
                continue
            }
            let version = poll.sequence + 1
            let keys = StoredKeys.encode(vote.ballot.keys)
            // The INSERT first: where the unique indexes find nothing to collide with, the rules
            // store a first ballot (`VoteRules.decide` with nothing earlier). Only a conflict
            // reads what is earlier and asks the rules.
            var receipt = Self.link(vote, revision: 0, keys: keys, micros: micros, after: poll)
            try Self.insertBallot(
                vote, revision: 0, keys: keys, version: version, at: timestamp, chain: receipt, with: insert, in: db)
            var decision = VoteRules.Decision.store(revision: 0, replacing: nil)
            if db.changesCount != 1 {
                let (earlier, keyed) = try Self.earlier(vote, in: db)
                decision = VoteRules.decide(vote, poll: poll, earlier: earlier)
                guard case .store(let revision, let replacing) = decision else {
                    let outcome = VoteRules.outcome(of: decision, version: version)
                    outcomes.append(outcome)
                    // A replay answers as the first time, with the stored ballot's place.
                    if chaining { receipts.append(outcome.isReplay ? keyed : nil) }
                    continue
                }
                // A conflict with nothing earlier: an idempotency key reused on another poll's
                // index cannot happen (the index is per poll), so this is a store invariant broken.
                guard replacing != nil else {
                    throw DatabaseError(
                        resultCode: .SQLITE_CONSTRAINT, message: "ballot conflict without an earlier ballot")
                }
                receipt = Self.link(vote, revision: revision, keys: keys, micros: micros, after: poll)
                try Self.insertBallot(
                    vote, revision: revision, keys: keys, version: version, at: timestamp, chain: receipt,
                    with: insert, in: db)
                guard db.changesCount == 1 else {
                    throw DatabaseError(resultCode: .SQLITE_CONSTRAINT, message: "a changed ballot's revision is taken")
                }
            }
            if case .store(_, let replacing?) = decision { poll.uncount(StoredKeys.decode(replacing)) }
            poll.count(vote.ballot, castAt: vote.castAt)
            if let receipt { poll.append(receipt) }
            if chaining { receipts.append(receipt) }
            outcomes.append(VoteRules.outcome(of: decision, version: version))
            polls[vote.pollID] = poll
        }

        let upsert = try db.cachedStatement(
            sql: """
                INSERT INTO tallies (poll_id, question, key, count) VALUES (?, ?, ?, ?)
                ON CONFLICT (poll_id, question, key) DO UPDATE SET count = count + excluded.count
                """)
        let bump = try db.cachedStatement(sql: "UPDATE polls SET version = ? WHERE id = ?")
        let bumpChained = try db.cachedStatement(
            sql: "UPDATE polls SET version = ?, chain_head = ?, chain_length = ? WHERE id = ?")
        let window = try db.cachedStatement(
            sql: """
                INSERT INTO ballot_windows (poll_id, second, question, key, count) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (poll_id, second, question, key) DO UPDATE SET count = count + excluded.count
                """)
        let second = CastWindows.second(ofMicros: micros)
        var changes: [PollChange] = []
        for (id, poll) in polls {
            guard let change = poll.change(pollID: id) else { continue }
            for delta in change.deltas {
                try Self.add(delta.amount, to: delta.key, of: id, second: nil, with: upsert, in: db)
            }
            for row in poll.windowCounts(second: second) {
                try Self.add(row.count, to: row.key, of: id, second: row.second, with: window, in: db)
            }
            if let chain = change.chain {
                try Self.bump(id, sequence: change.sequence, chain: chain, with: bumpChained, in: db)
            } else {
                try bump.execute(arguments: [change.sequence, id])
            }
            changes.append(change)
        }
        return CommitResult(outcomes: outcomes, changes: changes, receipts: receipts)
    }

    /// The place `vote` takes as `revision` after the poll's chain (nil when the store does not chain).
    static func link(
        _ vote: VoteCommand, revision: Int64, keys: String, micros: Int64, after poll: BatchedPoll
    ) -> BallotReceipt? {
        guard poll.chain != nil else { return nil }
        return poll.link(
            BallotChain.digest(
                poll: vote.pollID, voter: vote.voter, revision: revision, storedAtMicros: micros,
                answers: vote.ballot.canonical, keys: keys, castAt: vote.castAt))
    }

    /// The poll's new version and chain link, bound through the C API as the ballots are.
    static func bump(_ id: String, sequence: Int64, chain: ChainLink, with update: Statement, in db: Database) throws {
        let statement = update.sqliteStatement
        sqlite3_reset(statement)
        sqlite3_bind_int64(statement, 1, sequence)
        sqlite3_bind_int64(statement, 3, chain.length)
        var id = id
        // Bound in place (no copy): the bytes live until the step is done.
        let code = id.withUTF8 { text in
            chain.head.withBytes { head in
                _ = sqlite3_bind_blob(statement, 2, head.baseAddress, 32, nil)
                text.withMemoryRebound(to: CChar.self) { chars in
                    _ = sqlite3_bind_text(statement, 4, chars.baseAddress, Int32(chars.count), nil)
                }
                return sqlite3_step(statement)
            }
        }
        try Self.finish(update, code, in: db)
    }

    /// Adds `count` to one counter row, bound through the C API: `tallies` (poll, question, key,
    /// count) or, with `second`, `ballot_windows` (poll, second, question, key, count).
    static func add(
        _ count: Int64, to key: TallyKey, of poll: String, second: Int64?, with upsert: Statement, in db: Database
    ) throws {
        let statement = upsert.sqliteStatement
        sqlite3_reset(statement)
        Self.bind(poll, at: 1, to: statement)
        var index: Int32 = 2
        if let second {
            sqlite3_bind_int64(statement, 2, second)
            index = 3
        }
        Self.bind(key.question, at: index, to: statement)
        Self.bind(key.key, at: index + 1, to: statement)
        sqlite3_bind_int64(statement, index + 2, count)
        try Self.finish(upsert, sqlite3_step(statement), in: db)
    }

    /// Binds `value` (NULL for nil) as parameter `index`; SQLite copies the bytes.
    static func bind(_ value: String?, at index: Int32, to statement: SQLiteStatement) {
        guard var value else {
            sqlite3_bind_null(statement, index)
            return
        }
        value.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                if let address = chars.baseAddress {
                    _ = sqlite3_bind_text(statement, index, address, Int32(chars.count), Self.transient)
                } else {
                    _ = sqlite3_bind_text(statement, index, "", 0, Self.transient)
                }
            }
        }
    }

    /// Resets a statement stepped through the C API and throws what its step `code` reports.
    static func finish(_ statement: Statement, _ code: Int32, in db: Database) throws {
        sqlite3_reset(statement.sqliteStatement)
        guard code == SQLITE_DONE else {
            throw DatabaseError(
                resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)),
                sql: statement.sql)
        }
    }

    /// The ballot's row through the SQLite C API on GRDB's cached statement: binding through
    /// `StatementArguments` (an array of existentials, one per value) cost more than the INSERT.
    static func insertBallot(
        _ vote: VoteCommand, revision: Int64, keys: String, version: Int64, at timestamp: Double,
        chain: BallotReceipt?, with insert: Statement, in db: Database
    ) throws {
        let statement = insert.sqliteStatement
        sqlite3_reset(statement)
        Self.bind(vote.pollID, at: 1, to: statement)
        Self.bind(vote.voter, at: 2, to: statement)
        sqlite3_bind_int64(statement, 3, revision)
        Self.bind(vote.idempotencyKey, at: 4, to: statement)
        Self.bind(vote.ballot.canonical, at: 5, to: statement)
        Self.bind(keys, at: 6, to: statement)
        sqlite3_bind_int64(statement, 7, version)
        sqlite3_bind_double(statement, 8, timestamp)
        if let castAt = vote.castAt {
            sqlite3_bind_double(statement, 11, Double(castAt.micros) / 1_000_000)
            sqlite3_bind_int64(statement, 12, castAt.late ? 1 : 0)
        } else {
            sqlite3_bind_null(statement, 11)
            sqlite3_bind_int64(statement, 12, 0)
        }
        let code: Int32
        if let chain {
            // The hash's bytes are bound in place (no copy): they live until the step is done.
            code = chain.hash.withBytes { bytes in
                _ = sqlite3_bind_blob(statement, 9, bytes.baseAddress, 32, nil)
                sqlite3_bind_int64(statement, 10, chain.position)
                return sqlite3_step(statement)
            }
        } else {
            sqlite3_bind_null(statement, 9)
            sqlite3_bind_null(statement, 10)
            code = sqlite3_step(statement)
        }
        try Self.finish(insert, code, in: db)
    }

    /// `SQLITE_TRANSIENT`: SQLite copies the bound bytes (they live only for the call).
    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// What a vote whose INSERT hit a unique index collides with: the ballot stored under its
    /// idempotency key, and the voter's latest ballot.
    static func earlier(_ vote: VoteCommand, in db: Database) throws -> (VoteRules.Earlier, BallotReceipt?) {
        var earlier = VoteRules.Earlier()
        var keyed: BallotReceipt?
        if let key = vote.idempotencyKey,
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT answers, version, chain, chain_position FROM ballots
                        WHERE poll_id = ? AND idempotency_key = ?
                        """),
                arguments: [vote.pollID, key])
        {
            earlier.keyed = (row[0], row[1])
            let chain: Data? = row[2]
            let position: Int64? = row[3]
            if let chain, let hash = ChainHash(bytes: chain), let position {
                keyed = BallotReceipt(hash: hash, position: position, shard: 0)
            }
        }
        if let voter = vote.voter,
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT revision, answers, keys, version FROM ballots
                        WHERE poll_id = ? AND voter = ? ORDER BY revision DESC LIMIT 1
                        """),
                arguments: [vote.pollID, voter])
        {
            earlier.voter = (row[0], row[1], row[2], row[3])
        }
        return (earlier, keyed)
    }
}
