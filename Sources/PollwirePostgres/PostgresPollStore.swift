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
        for try await definition in try await connection.query(
            "SELECT definition FROM polls WHERE \(all) OR id = ANY(\(ids))", logger: logger
        ).decode(String.self) {
            let poll = try decoder.decode(Poll.self, from: Data(definition.utf8))
            polls[poll.id] = StoredPoll(poll: poll, shards: [:], tally: Tally(), latestText: [:])
        }
        for try await (pollID, node, sequence) in try await connection.query(
            "SELECT poll_id, node, sequence FROM poll_shards WHERE \(all) OR poll_id = ANY(\(ids))", logger: logger
        ).decode((String, Int32, Int64).self) {
            polls[pollID]?.shards[node] = sequence
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

    public func insert(_ poll: Poll) async throws {
        let definition = try Self.encode(poll)
        let notice = ChangeNotice(definitionOf: poll.id).payload()
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query(
                """
                INSERT INTO polls (id, definition, status, opens_at, closes_at, created_at)
                VALUES (\(poll.id), \(definition), \(poll.status.rawValue), \(poll.opensAt?.timeIntervalSince1970),
                        \(poll.closesAt?.timeIntervalSince1970), \(poll.createdAt.timeIntervalSince1970))
                """, logger: self.logger)
            try await connection.query("SELECT pg_notify(\(ChangeNotice.channel), \(notice))", logger: self.logger)
        }
    }

    public func update(_ poll: Poll) async throws -> Bool {
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
                try await connection.query("SELECT pg_notify(\(ChangeNotice.channel), \(notice))", logger: self.logger)
            }
            return updated
        }
    }

    public func delete(pollID: String) async throws -> Bool {
        let notice = ChangeNotice(definitionOf: pollID).payload()
        return try await self.client.withTransaction(logger: self.logger) { connection in
            let deleted =
                try await connection.query(
                    "DELETE FROM polls WHERE id = \(pollID) RETURNING 1", logger: self.logger
                ).collect().count == 1
            if deleted {
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
        for try await (seq, voter, revision, answers, version, createdAt) in try await self.client.query(
            """
            SELECT seq, voter, revision, answers, version, created_at FROM ballots
            WHERE poll_id = \(pollID) AND seq > \(after) ORDER BY seq LIMIT \(limit)
            """
        ).decode((Int64, String?, Int32, String, Int64, Date).self) {
            page.append(
                StoredBallot(
                    sequence: seq, voter: voter, revision: Int(revision), answers: answers, version: version,
                    createdAt: createdAt))
        }
        return page
    }

    static func encode(_ poll: Poll) throws -> String {
        String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
    }

    // MARK: Keys and secrets

    public func insertAPIKey(hash: String, name: String, createdAt: Date) async throws {
        try await self.client.query(
            "INSERT INTO api_keys (hash, name, created_at) VALUES (\(hash), \(name), \(createdAt.timeIntervalSince1970))"
        )
    }

    public func apiKeyExists(hash: String) async throws -> Bool {
        try await self.client.query("SELECT 1 FROM api_keys WHERE hash = \(hash)").collect().count == 1
    }

    public func apiKeyCount() async throws -> Int {
        try await Int(self.client.query("SELECT count(*) FROM api_keys").decode(Int64.self).first { _ in true } ?? 0)
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
