public import Foundation
import GRDB
public import PollwireCore
public import PollwireEngine

/// `PollStore` on the embedded SQLite database.
public struct SQLitePollStore: PollStore {
    let database: SQLiteDatabase

    public init(database: SQLiteDatabase) {
        self.database = database
    }

    // MARK: Polls

    public func loadPolls(latestTextLimit: Int) async throws -> [StoredPoll] {
        try await self.database.pool.read { db in
            let decoder = PollwireJSON.decoder()
            var polls: [String: StoredPoll] = [:]
            let pollRows = try Row.fetchCursor(db, sql: "SELECT definition, version FROM polls")
            while let row = try pollRows.next() {
                let definition: String = row[0]
                let poll = try decoder.decode(Poll.self, from: Data(definition.utf8))
                polls[poll.id] = StoredPoll(poll: poll, version: row[1], tally: Tally(), latestText: [:])
            }
            var counts: [String: [TallyDelta]] = [:]
            let tallyRows = try Row.fetchCursor(
                db, sql: "SELECT poll_id, question, key, count FROM tallies WHERE count != 0")
            while let row = try tallyRows.next() {
                counts[row[0], default: []].append(
                    TallyDelta(key: TallyKey(question: row[1], key: row[2]), amount: row[3]))
            }
            for (id, deltas) in counts { polls[id]?.tally.apply(deltas) }
            for (id, stored) in polls where stored.poll.questions.contains(where: { $0.kind == .text }) {
                polls[id]?.latestText = try Self.latestText(of: stored.poll, limit: latestTextLimit, in: db)
            }
            return Array(polls.values)
        }
    }

    /// The latest text answers per text question, newest first, from the latest ballots.
    static func latestText(of poll: Poll, limit: Int, in db: Database) throws -> [String: [String]] {
        var collector = LatestTextCollector(poll: poll, limit: limit)
        let rows = try String.fetchCursor(
            db, sql: "SELECT answers FROM ballots WHERE poll_id = ? ORDER BY seq DESC LIMIT ?",
            arguments: [poll.id, limit * 20])
        while let answers = try rows.next() { try collector.add(answers: answers) }
        return collector.latest
    }

    public func insert(_ poll: Poll) async throws {
        let definition = try Self.encode(poll)
        try await self.database.pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO polls (id, definition, status, opens_at, closes_at, version, created_at)
                    VALUES (?, ?, ?, ?, ?, 0, ?)
                    """,
                arguments: [
                    poll.id, definition, poll.status.rawValue, poll.opensAt?.timeIntervalSince1970,
                    poll.closesAt?.timeIntervalSince1970, poll.createdAt.timeIntervalSince1970,
                ])
        }
    }

    public func update(_ poll: Poll) async throws -> Bool {
        let definition = try Self.encode(poll)
        return try await self.database.pool.write { db in
            try db.execute(
                sql: "UPDATE polls SET definition = ?, status = ?, opens_at = ?, closes_at = ? WHERE id = ?",
                arguments: [
                    definition, poll.status.rawValue, poll.opensAt?.timeIntervalSince1970,
                    poll.closesAt?.timeIntervalSince1970, poll.id,
                ])
            return db.changesCount == 1
        }
    }

    public func delete(pollID: String) async throws -> Bool {
        try await self.database.pool.write { db in
            try db.execute(sql: "DELETE FROM polls WHERE id = ?", arguments: [pollID])
            return db.changesCount == 1
        }
    }

    public func ballotCount(pollID: String) async throws -> Int64 {
        try await self.database.pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM ballots WHERE poll_id = ?", arguments: [pollID]) ?? 0
        }
    }

    public func ballots(pollID: String, after: Int64, limit: Int) async throws -> [StoredBallot] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, voter, revision, answers, version, created_at FROM ballots
                    WHERE poll_id = ? AND seq > ? ORDER BY seq LIMIT ?
                    """,
                arguments: [pollID, after, limit]
            ).map { row in
                StoredBallot(
                    sequence: row[0], voter: row[1], revision: row[2], answers: row[3], version: row[4],
                    createdAt: Date(timeIntervalSince1970: row[5]))
            }
        }
    }

    static func encode(_ poll: Poll) throws -> String {
        String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
    }

    // MARK: Keys and secrets

    public func insertAPIKey(hash: String, name: String, createdAt: Date) async throws {
        try await self.database.pool.write { db in
            try db.execute(
                sql: "INSERT INTO api_keys (hash, name, created_at) VALUES (?, ?, ?)",
                arguments: [hash, name, createdAt.timeIntervalSince1970])
        }
    }

    public func apiKeyExists(hash: String) async throws -> Bool {
        try await self.database.pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM api_keys WHERE hash = ?", arguments: [hash]) ?? false
        }
    }

    public func apiKeyCount() async throws -> Int {
        try await self.database.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys") ?? 0
        }
    }

    public func secret(named name: String, orMake make: @Sendable () -> [UInt8]) async throws -> [UInt8] {
        try await self.database.pool.write { db in
            if let value = try Data.fetchOne(db, sql: "SELECT value FROM secrets WHERE name = ?", arguments: [name]) {
                return Array(value)
            }
            let value = make()
            try db.execute(sql: "INSERT INTO secrets (name, value) VALUES (?, ?)", arguments: [name, Data(value)])
            return value
        }
    }
}
