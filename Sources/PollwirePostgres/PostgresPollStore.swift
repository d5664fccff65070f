public import Foundation
import Logging
public import PollwireCore
public import PollwireEngine
import PostgresNIO

/// `PollStore` on PostgreSQL. Every definition change also tells the other nodes
/// (`pg_notify` in the same transaction), so a poll created on one node takes votes on all.
public struct PostgresPollStore: PollStore {
    let database: PostgresDatabase
    let logger: Logger

    public init(database: PostgresDatabase) {
        self.database = database
        self.logger = database.logger
    }

    var client: PostgresClient { self.database.client }

    // MARK: Polls

    public func loadPolls(latestTextLimit: Int) async throws -> [StoredPoll] {
        try await self.readSnapshot { connection in
            try await Self.polls(id: nil, latestTextLimit: latestTextLimit, on: connection, logger: self.logger)
        }
    }

    /// One poll as the store holds it now, or nil when it does not exist (any more).
    public func loadPoll(_ id: String, latestTextLimit: Int) async throws -> StoredPoll? {
        try await self.readSnapshot { connection in
            try await Self.polls(id: id, latestTextLimit: latestTextLimit, on: connection, logger: self.logger)
        }.first
    }

    /// Every poll's version (the sum of its shards' sequences): what a node compares its book
    /// with after it missed notifications.
    public func versions() async throws -> [String: Int64] {
        var versions: [String: Int64] = [:]
        for try await (id, version) in try await self.client.query(
            """
            SELECT p.id, COALESCE(sum(s.sequence), 0)::int8 FROM polls p
            LEFT JOIN poll_shards s ON s.poll_id = p.id GROUP BY p.id
            """
        ).decode((String, Int64).self) {
            versions[id] = version
        }
        return versions
    }

    /// Reads in one REPEATABLE READ transaction: definitions, versions and counters agree.
    func readSnapshot<Value: Sendable>(
        _ body: (PostgresConnection) async throws -> Value
    ) async throws -> Value {
        try await self.client.withConnection { connection in
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: self.logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: self.logger)
                return value
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: self.logger)
                throw error
            }
        }
    }

    static func polls(
        id: String?, latestTextLimit: Int, on connection: PostgresConnection, logger: Logger
    ) async throws -> [StoredPoll] {
        let decoder = PollwireJSON.decoder()
        var polls: [String: StoredPoll] = [:]
        let ids = id.map { [$0] } ?? []
        let all = id == nil
        for try await (definition, owner) in try await connection.query(
            "SELECT definition, owner_id FROM polls WHERE \(all) OR id = ANY(\(ids))", logger: logger
        ).decode((String, String).self) {
            var poll = try decoder.decode(Poll.self, from: Data(definition.utf8))
            poll.owner = owner
            polls[poll.id] = StoredPoll(poll: poll, shards: [:], tally: Tally(), latestText: [:])
        }
        for try await (pollID, node, sequence, length, head) in try await connection.query(
            """
            SELECT poll_id, node, sequence, chain_length, COALESCE(encode(chain_head, 'hex'), '') FROM poll_shards
            WHERE \(all) OR poll_id = ANY(\(ids))
            """, logger: logger
        ).decode((String, Int32, Int64, Int64, String).self) {
            if sequence > 0 { polls[pollID]?.shards[node] = sequence }
            if length > 0, let head = ChainHash(hex: head) {
                polls[pollID]?.chains[node] = ChainLink(length: length, head: head)
            }
        }
        var counts: [String: [TallyDelta]] = [:]
        for try await (pollID, question, key, count) in try await connection.query(
            """
            SELECT poll_id, question, key, sum(count)::int8 FROM tally_shards
            WHERE \(all) OR poll_id = ANY(\(ids)) GROUP BY poll_id, question, key HAVING sum(count) <> 0
            """,
            logger: logger
        ).decode((String, String, String, Int64).self) {
            counts[pollID, default: []].append(TallyDelta(key: TallyKey(question: question, key: key), amount: count))
        }
        for (id, deltas) in counts { polls[id]?.tally.apply(deltas) }
        for (id, stored) in polls where stored.poll.questions.contains(where: { $0.kind == .text }) {
            polls[id]?.latestText = try await Self.latestText(
                of: stored.poll, limit: latestTextLimit, on: connection, logger: logger)
        }
        return Array(polls.values)
    }

    /// The latest text answers per text question, newest first, from the latest ballots.
    static func latestText(
        of poll: Poll, limit: Int, on connection: PostgresConnection, logger: Logger
    ) async throws -> [String: [String]] {
        var collector = LatestTextCollector(poll: poll, limit: limit)
        for try await answers in try await connection.query(
            "SELECT answers FROM ballots WHERE poll_id = \(poll.id) ORDER BY seq DESC LIMIT \(limit * 20)",
            logger: logger
        ).decode(String.self) {
            try collector.add(answers: answers)
        }
        return collector.latest
    }

    public func insert(_ poll: Poll, audit: AuditEntry?) async throws {
        let definition = try Self.encode(poll)
        let notice = ChangeNotice(definitionOf: poll.id).payload()
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query(
                """
                INSERT INTO polls (id, definition, status, opens_at, closes_at, created_at, owner_id)
                VALUES (\(poll.id), \(definition), \(poll.status.rawValue), \(poll.opensAt?.timeIntervalSince1970),
                        \(poll.closesAt?.timeIntervalSince1970), \(poll.createdAt.timeIntervalSince1970), \(poll.owner))
                """, logger: self.logger)
            try await Self.append(audit, on: connection, logger: self.logger)
            try await connection.query("SELECT pg_notify(\(ChangeNotice.channel), \(notice))", logger: self.logger)
        }
    }

    public func update(_ poll: Poll, audit: AuditEntry?) async throws -> Bool {
        let definition = try Self.encode(poll)
        let notice = ChangeNotice(definitionOf: poll.id).payload()
        return try await self.client.withTransaction(logger: self.logger) { connection in
            let updated =
                try await connection.query(
                    """
                    UPDATE polls SET definition = \(definition), status = \(poll.status.rawValue),
                        opens_at = \(poll.opensAt?.timeIntervalSince1970), closes_at = \(poll.closesAt?.timeIntervalSince1970)
                    WHERE id = \(poll.id) RETURNING 1
                    """, logger: self.logger
                ).collect().count == 1
            if updated {
                try await Self.append(audit, on: connection, logger: self.logger)
                try await connection.query("SELECT pg_notify(\(ChangeNotice.channel), \(notice))", logger: self.logger)
            }
            return updated
        }
    }

    public func delete(pollID: String, audit: AuditEntry?) async throws -> Bool {
        let notice = ChangeNotice(definitionOf: pollID).payload()
        return try await self.client.withTransaction(logger: self.logger) { connection in
            let deleted =
                try await connection.query(
                    "DELETE FROM polls WHERE id = \(pollID) RETURNING 1", logger: self.logger
                ).collect().count == 1
            if deleted {
                try await Self.append(audit, on: connection, logger: self.logger)
                try await connection.query("SELECT pg_notify(\(ChangeNotice.channel), \(notice))", logger: self.logger)
            }
            return deleted
        }
    }

    public func ballotCount(pollID: String) async throws -> Int64 {
        try await self.client.query("SELECT count(*) FROM ballots WHERE poll_id = \(pollID)").decode(Int64.self)
            .first { _ in true } ?? 0
    }

    public func ballots(pollID: String, after: Int64, limit: Int) async throws -> [StoredBallot] {
        var page: [StoredBallot] = []
        let rows = try await self.client.query(
            """
            SELECT seq, voter, revision, answers, version, created_at, cast_at, late FROM ballots
            WHERE poll_id = \(pollID) AND seq > \(after) ORDER BY seq LIMIT \(limit)
            """
        ).decode((Int64, String?, Int32, String, Int64, Date, Int64?, Bool).self)
        for try await (seq, voter, revision, answers, version, createdAt, castAt, late) in rows {
            page.append(
                StoredBallot(
                    sequence: seq, voter: voter, revision: Int(revision), answers: answers, version: version,
                    createdAt: createdAt, castAt: castAt.map { VoteCommand.CastAt(micros: $0, late: late) }))
        }
        return page
    }

    public func chainedBallots(pollID: String, after: Int64, limit: Int) async throws -> [ChainedBallot] {
        var page: [ChainedBallot] = []
        let rows = try await self.client.query(
            """
            SELECT seq, voter, revision::int8, (extract(epoch FROM created_at) * 1000000)::int8, answers, keys,
                COALESCE(encode(chain, 'hex'), ''), chain_position, chain_shard, cast_at, late FROM ballots
            WHERE poll_id = \(pollID) AND seq > \(after) ORDER BY seq LIMIT \(limit)
            """
        ).decode((Int64, String?, Int64, Int64, String, String, String, Int64?, Int32?, Int64?, Bool).self)
        for try await (seq, voter, revision, micros, answers, keys, chain, position, shard, castAt, late) in rows {
            page.append(
                ChainedBallot(
                    sequence: seq, voter: voter, revision: revision, storedAtMicros: micros, answers: answers,
                    keys: keys,
                    chain: ChainHash(hex: chain), position: position, shard: shard,
                    castAt: castAt.map { VoteCommand.CastAt(micros: $0, late: late) }))
        }
        return page
    }

    public func windowCounts(pollID: String, from: Int64, to: Int64) async throws -> [WindowCount] {
        var rows: [WindowCount] = []
        for try await (second, question, key, count) in try await self.client.query(
            """
            SELECT second, question, key, sum(count)::int8 FROM ballot_windows
            WHERE poll_id = \(pollID) AND second >= \(from) AND second < \(to)
            GROUP BY second, question, key ORDER BY second, question, key
            """
        ).decode((Int64, String, String, Int64).self) {
            rows.append(WindowCount(second: second, key: TallyKey(question: question, key: key), count: count))
        }
        return rows
    }

    static func encode(_ poll: Poll) throws -> String {
        String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
    }

    // MARK: Owners, keys and the audit log

    public func insertOwner(_ owner: OwnerRecord, audit: AuditEntry?) async throws -> Bool {
        try await self.client.withTransaction(logger: self.logger) { connection in
            let inserted =
                try await connection.query(
                    """
                    INSERT INTO owners (id, name, created_at)
                    VALUES (\(owner.id), \(owner.name), \(owner.createdAt.timeIntervalSince1970))
                    ON CONFLICT (id) DO NOTHING RETURNING 1
                    """, logger: self.logger
                ).collect().count == 1
            if inserted { try await Self.append(audit, on: connection, logger: self.logger) }
            return inserted
        }
    }

    public func owners() async throws -> [OwnerRecord] {
        var owners: [OwnerRecord] = []
        for try await (id, name, createdAt) in try await self.client.query(
            "SELECT id, name, created_at FROM owners ORDER BY created_at, id"
        ).decode((String, String, Double).self) {
            owners.append(OwnerRecord(id: id, name: name, createdAt: Date(timeIntervalSince1970: createdAt)))
        }
        return owners
    }

    public func insertAPIKey(_ key: APIKeyRecord, hash: String, audit: AuditEntry?) async throws {
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await Self.requireOwner(key.owner, on: connection, logger: self.logger)
            try await connection.query(
                """
                INSERT INTO api_keys (hash, id, owner_id, name, scopes, created_at, expires_at)
                VALUES (\(hash), \(key.id), \(key.owner), \(key.name), \(KeyScope.text(key.scopes)),
                        \(key.createdAt.timeIntervalSince1970), \(key.expiresAt?.timeIntervalSince1970))
                """, logger: self.logger)
            try await Self.append(audit, on: connection, logger: self.logger)
        }
    }

    /// Throws `AccessError.unknownOwner` unless `owner` exists (keys and voter keys need one).
    static func requireOwner(_ owner: String, on connection: PostgresConnection, logger: Logger) async throws {
        guard
            try await connection.query("SELECT 1 FROM owners WHERE id = \(owner)", logger: logger).collect().count == 1
        else { throw AccessError.unknownOwner(owner) }
    }

    typealias KeyRow = (String, String, String, String, Double, Double?, Double?, Double?)

    static func key(_ row: KeyRow) -> APIKeyRecord {
        APIKeyRecord(
            id: row.0, owner: row.1, name: row.2, scopes: (try? KeyScope.parse(row.3).get()) ?? [],
            createdAt: Date(timeIntervalSince1970: row.4), expiresAt: row.5.map(Date.init(timeIntervalSince1970:)),
            lastUsedAt: row.6.map(Date.init(timeIntervalSince1970:)),
            revokedAt: row.7.map(Date.init(timeIntervalSince1970:)))
    }

    public func apiKey(hash: String) async throws -> APIKeyRecord? {
        try await self.client.query(
            """
            SELECT id, owner_id, name, scopes, created_at, expires_at, last_used_at, revoked_at
            FROM api_keys WHERE hash = \(hash)
            """
        ).decode(KeyRow.self).first { _ in true }.map(Self.key)
    }

    public func apiKeys(owner: String?) async throws -> [APIKeyRecord] {
        var keys: [APIKeyRecord] = []
        for try await row in try await self.client.query(
            """
            SELECT id, owner_id, name, scopes, created_at, expires_at, last_used_at, revoked_at
            FROM api_keys WHERE \(owner)::text IS NULL OR owner_id = \(owner) ORDER BY created_at, id
            """
        ).decode(KeyRow.self) {
            keys.append(Self.key(row))
        }
        return keys
    }

    public func revokeAPIKey(id: String, owner: String?, at: Date, audit: AuditEntry?) async throws -> Bool {
        try await self.client.withTransaction(logger: self.logger) { connection in
            var revoked: Bool?
            for try await row in try await connection.query(
                """
                SELECT revoked_at IS NOT NULL FROM api_keys
                WHERE id = \(id) AND (\(owner)::text IS NULL OR owner_id = \(owner)) FOR UPDATE
                """, logger: self.logger
            ).decode(Bool.self) {
                revoked = row
            }
            guard let revoked else { return false }
            guard !revoked else { return true }
            try await connection.query(
                "UPDATE api_keys SET revoked_at = \(at.timeIntervalSince1970) WHERE id = \(id)", logger: self.logger)
            try await Self.append(audit, on: connection, logger: self.logger)
            return true
        }
    }

    public func touchAPIKey(id: String, at: Date) async throws {
        try await self.client.query("UPDATE api_keys SET last_used_at = \(at.timeIntervalSince1970) WHERE id = \(id)")
    }

    public func apiKeyCount() async throws -> Int {
        try await Int(self.client.query("SELECT count(*) FROM api_keys").decode(Int64.self).first { _ in true } ?? 0)
    }

    public func insertVoterKey(_ key: VoterKeyRecord, audit: AuditEntry?) async throws {
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await Self.requireOwner(key.owner, on: connection, logger: self.logger)
            try await connection.query(
                """
                INSERT INTO voter_keys (id, owner_id, algorithm, material, created_at)
                VALUES (\(key.id), \(key.owner), \(key.algorithm.rawValue), \(key.material),
                        \(key.createdAt.timeIntervalSince1970))
                """, logger: self.logger)
            try await Self.append(audit, on: connection, logger: self.logger)
        }
    }

    public func voterKeys(owner: String) async throws -> [VoterKeyRecord] {
        var keys: [VoterKeyRecord] = []
        for try await (id, owner, algorithm, material, createdAt) in try await self.client.query(
            """
            SELECT id, owner_id, algorithm, material, created_at FROM voter_keys WHERE owner_id = \(owner)
            ORDER BY created_at, id
            """
        ).decode((String, String, String, String, Double).self) {
            guard let algorithm = VoterKeyRecord.Algorithm(rawValue: algorithm) else { continue }
            keys.append(
                VoterKeyRecord(
                    id: id, owner: owner, algorithm: algorithm, material: material,
                    createdAt: Date(timeIntervalSince1970: createdAt)))
        }
        return keys
    }

    public func deleteVoterKey(id: String, owner: String, audit: AuditEntry?) async throws -> Bool {
        try await self.client.withTransaction(logger: self.logger) { connection in
            let deleted =
                try await connection.query(
                    "DELETE FROM voter_keys WHERE id = \(id) AND owner_id = \(owner) RETURNING 1", logger: self.logger
                ).collect().count == 1
            if deleted { try await Self.append(audit, on: connection, logger: self.logger) }
            return deleted
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await self.client.withConnection { connection in
            try await Self.append(entry, on: connection, logger: self.logger)
        }
    }

    static func append(_ entry: AuditEntry?, on connection: PostgresConnection, logger: Logger) async throws {
        guard let entry else { return }
        try await connection.query(
            """
            INSERT INTO audit_log (at, key_id, owner_id, request_id, action, poll_id, detail)
            VALUES (\(entry.at.timeIntervalSince1970), \(entry.key), \(entry.owner), \(entry.requestID),
                    \(entry.action), \(entry.poll), \(entry.detail))
            """, logger: logger)
    }

    public func audit(_ query: AuditQuery, limit: Int) async throws -> [AuditEntry] {
        var entries: [AuditEntry] = []
        let from = query.from?.timeIntervalSince1970
        let to = query.to?.timeIntervalSince1970
        for try await (seq, at, key, owner, requestID, action, poll, detail) in try await self.client.query(
            """
            SELECT seq, at, key_id, owner_id, request_id, action, poll_id, detail FROM audit_log
            WHERE seq > \(query.after) AND (\(query.owner)::text IS NULL OR owner_id = \(query.owner))
              AND (\(query.poll)::text IS NULL OR poll_id = \(query.poll))
              AND (\(query.key)::text IS NULL OR key_id = \(query.key))
              AND (\(from)::float8 IS NULL OR at >= \(from)) AND (\(to)::float8 IS NULL OR at < \(to))
            ORDER BY seq LIMIT \(limit)
            """
        ).decode((Int64, Double, String, String, String?, String, String?, String).self) {
            entries.append(
                AuditEntry(
                    sequence: seq, at: Date(timeIntervalSince1970: at), key: key, owner: owner, requestID: requestID,
                    action: action, poll: poll, detail: detail))
        }
        return entries
    }

    public func secret(named name: String, orMake make: @Sendable () -> [UInt8]) async throws -> [UInt8] {
        // Two nodes starting at once both try to insert; the first one's value wins for both.
        let value = ByteBuffer(bytes: make())
        try await self.client.query(
            "INSERT INTO secrets (name, value) VALUES (\(name), \(value)) ON CONFLICT (name) DO NOTHING")
        let stored = try await self.client.query("SELECT value FROM secrets WHERE name = \(name)").decode(
            ByteBuffer.self
        ).first { _ in true }
        guard let stored else { throw PostgresStoreError("the secret \(name) vanished") }
        return Array(buffer: stored)
    }
}

/// A store invariant that does not hold.
struct PostgresStoreError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
