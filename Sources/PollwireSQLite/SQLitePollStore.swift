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
            let pollRows = try Row.fetchCursor(
                db, sql: "SELECT definition, version, owner_id, chain_head, chain_length FROM polls")
            while let row = try pollRows.next() {
                let definition: String = row[0]
                var poll = try decoder.decode(Poll.self, from: Data(definition.utf8))
                poll.owner = row[2]
                var stored = StoredPoll(poll: poll, version: row[1], tally: Tally(), latestText: [:])
                let head: Data? = row[3]
                if let head, let hash = ChainHash(bytes: head) {
                    stored.chains[0] = ChainLink(length: row[4], head: hash)
                }
                polls[poll.id] = stored
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

    public func insert(_ poll: Poll, audit: AuditEntry?) async throws {
        let definition = try Self.encode(poll)
        try await self.database.pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO polls (id, definition, status, opens_at, closes_at, version, created_at, owner_id)
                    VALUES (?, ?, ?, ?, ?, 0, ?, ?)
                    """,
                arguments: [
                    poll.id, definition, poll.status.rawValue, poll.opensAt?.timeIntervalSince1970,
                    poll.closesAt?.timeIntervalSince1970, poll.createdAt.timeIntervalSince1970, poll.owner,
                ])
            try Self.append(audit, in: db)
        }
    }

    public func update(_ poll: Poll, audit: AuditEntry?) async throws -> Bool {
        let definition = try Self.encode(poll)
        return try await self.database.pool.write { db in
            try db.execute(
                sql: "UPDATE polls SET definition = ?, status = ?, opens_at = ?, closes_at = ? WHERE id = ?",
                arguments: [
                    definition, poll.status.rawValue, poll.opensAt?.timeIntervalSince1970,
                    poll.closesAt?.timeIntervalSince1970, poll.id,
                ])
            guard db.changesCount == 1 else { return false }
            try Self.append(audit, in: db)
            return true
        }
    }

    public func delete(pollID: String, audit: AuditEntry?) async throws -> Bool {
        try await self.database.pool.write { db in
            try db.execute(sql: "DELETE FROM polls WHERE id = ?", arguments: [pollID])
            guard db.changesCount == 1 else { return false }
            try Self.append(audit, in: db)
            return true
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
                    SELECT seq, voter, revision, answers, version, created_at, cast_at, late FROM ballots
                    WHERE poll_id = ? AND seq > ? ORDER BY seq LIMIT ?
                    """,
                arguments: [pollID, after, limit]
            ).map { row in
                let castAt: Double? = row[6]
                return StoredBallot(
                    sequence: row[0], voter: row[1], revision: row[2], answers: row[3], version: row[4],
                    createdAt: Date(timeIntervalSince1970: row[5]),
                    castAt: castAt.map { VoteCommand.CastAt(micros: SQLiteVoteStore.micros($0), late: row[7]) })
            }
        }
    }

    public func chainedBallots(pollID: String, after: Int64, limit: Int) async throws -> [ChainedBallot] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, voter, revision, created_at, answers, keys, chain, chain_position, cast_at, late
                    FROM ballots
                    WHERE poll_id = ? AND seq > ? ORDER BY seq LIMIT ?
                    """,
                arguments: [pollID, after, limit]
            ).map { row in
                let chain: Data? = row[6]
                let hash = chain.flatMap { ChainHash(bytes: $0) }
                let castAt: Double? = row[8]
                return ChainedBallot(
                    sequence: row[0], voter: row[1], revision: row[2], storedAtMicros: SQLiteVoteStore.micros(row[3]),
                    answers: row[4], keys: row[5], chain: hash, position: row[7], shard: hash == nil ? nil : 0,
                    castAt: castAt.map { VoteCommand.CastAt(micros: SQLiteVoteStore.micros($0), late: row[9]) })
            }
        }
    }

    public func windowCounts(pollID: String, from: Int64, to: Int64) async throws -> [WindowCount] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT second, question, key, count FROM ballot_windows
                    WHERE poll_id = ? AND second >= ? AND second < ? ORDER BY second, question, key
                    """,
                arguments: [pollID, from, to]
            ).map { WindowCount(second: $0[0], key: TallyKey(question: $0[1], key: $0[2]), count: $0[3]) }
        }
    }

    static func encode(_ poll: Poll) throws -> String {
        String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
    }

    // MARK: Owners, keys and the audit log

    public func insertOwner(_ owner: OwnerRecord, audit: AuditEntry?) async throws -> Bool {
        try await self.database.pool.write { db in
            try db.execute(
                sql: "INSERT INTO owners (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                arguments: [owner.id, owner.name, owner.createdAt.timeIntervalSince1970])
            guard db.changesCount == 1 else { return false }
            try Self.append(audit, in: db)
            return true
        }
    }

    public func owners() async throws -> [OwnerRecord] {
        try await self.database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, created_at FROM owners ORDER BY created_at, id").map { row in
                OwnerRecord(id: row[0], name: row[1], createdAt: Date(timeIntervalSince1970: row[2]))
            }
        }
    }

    public func insertAPIKey(_ key: APIKeyRecord, hash: String, audit: AuditEntry?) async throws {
        try await self.database.pool.write { db in
            try Self.requireOwner(key.owner, in: db)
            try db.execute(
                sql: """
                    INSERT INTO api_keys (hash, id, owner_id, name, scopes, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    hash, key.id, key.owner, key.name, KeyScope.text(key.scopes), key.createdAt.timeIntervalSince1970,
                    key.expiresAt?.timeIntervalSince1970,
                ])
            try Self.append(audit, in: db)
        }
    }

    /// Throws `AccessError.unknownOwner` unless `owner` exists (keys and voter keys need one).
    static func requireOwner(_ owner: String, in db: Database) throws {
        guard try Bool.fetchOne(db, sql: "SELECT 1 FROM owners WHERE id = ?", arguments: [owner]) ?? false
        else { throw AccessError.unknownOwner(owner) }
    }

    static let keyColumns = "id, owner_id, name, scopes, created_at, expires_at, last_used_at, revoked_at"

    static func key(_ row: Row) -> APIKeyRecord {
        APIKeyRecord(
            id: row[0], owner: row[1], name: row[2],
            scopes: (try? KeyScope.parse(row[3]).get()) ?? [], createdAt: Date(timeIntervalSince1970: row[4]),
            expiresAt: (row[5] as Double?).map(Date.init(timeIntervalSince1970:)),
            lastUsedAt: (row[6] as Double?).map(Date.init(timeIntervalSince1970:)),
            revokedAt: (row[7] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    public func apiKey(hash: String) async throws -> APIKeyRecord? {
        try await self.database.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.keyColumns) FROM api_keys WHERE hash = ?", arguments: [hash])
                .map(Self.key)
        }
    }

    public func apiKeys(owner: String?) async throws -> [APIKeyRecord] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.keyColumns) FROM api_keys WHERE ?1 IS NULL OR owner_id = ?1
                    ORDER BY created_at, id
                    """, arguments: [owner]
            ).map(Self.key)
        }
    }

    public func revokeAPIKey(id: String, owner: String?, at: Date, audit: AuditEntry?) async throws -> Bool {
        try await self.database.pool.write { db in
            guard
                let revoked = try Row.fetchOne(
                    db, sql: "SELECT revoked_at FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
                    arguments: [id, owner])
            else { return false }
            guard (revoked[0] as Double?) == nil else { return true }
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = ? WHERE id = ?", arguments: [at.timeIntervalSince1970, id])
            try Self.append(audit, in: db)
            return true
        }
    }

    public func touchAPIKey(id: String, at: Date) async throws {
        try await self.database.pool.write { db in
            try db.execute(
                sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [at.timeIntervalSince1970, id])
        }
    }

    public func apiKeyCount() async throws -> Int {
        try await self.database.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys") ?? 0
        }
    }

    public func insertVoterKey(_ key: VoterKeyRecord, audit: AuditEntry?) async throws {
        try await self.database.pool.write { db in
            try Self.requireOwner(key.owner, in: db)
            try db.execute(
                sql: "INSERT INTO voter_keys (id, owner_id, algorithm, material, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    key.id, key.owner, key.algorithm.rawValue, key.material, key.createdAt.timeIntervalSince1970,
                ])
            try Self.append(audit, in: db)
        }
    }

    public func voterKeys(owner: String) async throws -> [VoterKeyRecord] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, owner_id, algorithm, material, created_at FROM voter_keys WHERE owner_id = ?
                    ORDER BY created_at, id
                    """, arguments: [owner]
            ).compactMap { row in
                VoterKeyRecord.Algorithm(rawValue: row[2]).map {
                    VoterKeyRecord(
                        id: row[0], owner: row[1], algorithm: $0, material: row[3],
                        createdAt: Date(timeIntervalSince1970: row[4]))
                }
            }
        }
    }

    public func deleteVoterKey(id: String, owner: String, audit: AuditEntry?) async throws -> Bool {
        try await self.database.pool.write { db in
            try db.execute(sql: "DELETE FROM voter_keys WHERE id = ? AND owner_id = ?", arguments: [id, owner])
            guard db.changesCount == 1 else { return false }
            try Self.append(audit, in: db)
            return true
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await self.database.pool.write { db in try Self.append(entry, in: db) }
    }

    static func append(_ entry: AuditEntry?, in db: Database) throws {
        guard let entry else { return }
        try db.execute(
            sql: """
                INSERT INTO audit_log (at, key_id, owner_id, request_id, action, poll_id, detail)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                entry.at.timeIntervalSince1970, entry.key, entry.owner, entry.requestID, entry.action, entry.poll,
                entry.detail,
            ])
    }

    public func audit(_ query: AuditQuery, limit: Int) async throws -> [AuditEntry] {
        try await self.database.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, at, key_id, owner_id, request_id, action, poll_id, detail FROM audit_log
                    WHERE seq > ?1 AND (?2 IS NULL OR owner_id = ?2) AND (?3 IS NULL OR poll_id = ?3)
                      AND (?4 IS NULL OR key_id = ?4) AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6)
                    ORDER BY seq LIMIT ?7
                    """,
                arguments: [
                    query.after, query.owner, query.poll, query.key, query.from?.timeIntervalSince1970,
                    query.to?.timeIntervalSince1970, limit,
                ]
            ).map { row in
                AuditEntry(
                    sequence: row[0], at: Date(timeIntervalSince1970: row[1]), key: row[2], owner: row[3],
                    requestID: row[4], action: row[5], poll: row[6], detail: row[7])
            }
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
