public import Foundation
public import Logging
import PollwireCore
import PollwireEngine
public import PostgresNIO

/// The cluster store's PostgreSQL: where it is, its connection pool, migrations and the
/// ballot partitions.
///
/// ```swift
/// let database = try PostgresDatabase(url: "postgres://pollwire@127.0.0.1:5432/pollwire")
/// // run `database.client` as a service (its pool works only while it runs), then:
/// try await database.migrate()
/// ```
public struct PostgresDatabase: Sendable {
    /// A `postgres://` URL that cannot be used.
    public struct URLError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Where the server is and who logs in.
    public let configuration: PostgresClient.Configuration
    /// The pool every query goes through (the change feed holds one of its connections). Runs as a service.
    public let client: PostgresClient
    /// Months of ballot partitions kept created ahead of now.
    public let partitionMonthsAhead: Int
    let logger: Logger

    /// - Parameters:
    ///   - url: `postgres://user[:password]@host[:port]/database`, optional `?sslmode=disable|prefer|require`
    ///     (default disable) and `?host=/path/to/socket/dir` for a Unix socket.
    ///   - maxConnections: size of the pool.
    public init(
        url: String, maxConnections: Int = 8, partitionMonthsAhead: Int = 3,
        logger: Logger = Logger(label: "pollwire.postgres")
    ) throws {
        self.configuration = try Self.configuration(url: url, maxConnections: maxConnections)
        self.client = PostgresClient(configuration: self.configuration, backgroundLogger: logger)
        self.partitionMonthsAhead = partitionMonthsAhead
        self.logger = logger
    }

    static func configuration(url: String, maxConnections: Int) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            ["postgres", "postgresql"].contains(components.scheme ?? "")
        else { throw URLError(description: "the store URL must look like postgres://user@host:5432/database") }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let user = components.user ?? "postgres"
        let database = components.path.count > 1 ? String(components.path.dropFirst()) : nil
        var configuration: PostgresClient.Configuration
        if let directory = query["host"], directory.hasPrefix("/") {
            let port = components.port ?? 5432
            configuration = .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: components.password,
                database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS
            switch query["sslmode"] ?? "disable" {
            case "disable": tls = .disable
            case "prefer": tls = .prefer(.makeClientConfiguration())
            case "require": tls = .require(.makeClientConfiguration())
            case let mode: throw URLError(description: "sslmode must be disable, prefer or require, not \(mode)")
            }
            configuration = .init(
                host: components.host ?? "127.0.0.1", port: components.port ?? 5432, username: user,
                password: components.password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = max(1, maxConnections)
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.keepAliveBehavior = .init(frequency: .seconds(10))
        return configuration
    }

    /// Runs the connection pool until the task is cancelled (the pool works only while it runs).
    public func run() async {
        await self.client.run()
    }

    // MARK: Schema

    /// Applies every migration not applied yet, then makes sure the ballot partitions exist.
    /// Safe to run from many nodes at once: an advisory lock serialises them.
    public func migrate() async throws {
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7041992)", logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS pollwire_migrations (
                    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: self.logger)
            var applied: Set<String> = []
            for try await name in try await connection.query(
                "SELECT name FROM pollwire_migrations", logger: self.logger
            ).decode(String.self) {
                applied.insert(name)
            }
            for (name, statements) in Self.migrations where !applied.contains(name) {
                for statement in statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                if name == "v4-chain" { try await Self.chainStoredBallots(on: connection, logger: self.logger) }
                if name == "v5-windows" { try await Self.countStoredWindows(on: connection, logger: self.logger) }
                try await connection.query(
                    "INSERT INTO pollwire_migrations (name) VALUES (\(name))", logger: self.logger)
                self.logger.info("migrated", metadata: ["migration": "\(name)"])
            }
        }
        try await self.createPartitions()
    }

    /// Creates this month's ballot partition and `partitionMonthsAhead` more (monthly ranges of
    /// `created_at`); rows outside them land in the default partition.
    public func createPartitions(now: Date = Date()) async throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let month = calendar.date(from: calendar.dateComponents([.year, .month], from: now))!
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7041993)", logger: self.logger)
            for offset in 0...self.partitionMonthsAhead {
                let start = calendar.date(byAdding: .month, value: offset, to: month)!
                let end = calendar.date(byAdding: .month, value: 1, to: start)!
                let parts = calendar.dateComponents([.year, .month], from: start)
                let name = String(format: "ballots_%04d_%02d", parts.year!, parts.month!)
                let formatter = ISO8601DateFormatter()
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE TABLE IF NOT EXISTS \(name) PARTITION OF ballots
                            FOR VALUES FROM ('\(formatter.string(from: start))') TO ('\(formatter.string(from: end))')
                            """), logger: self.logger)
            }
        }
    }

    /// The schema, one migration per step; never edit a shipped step, add a new one.
    ///
    /// Ballots are an append-only log partitioned by month of `created_at`. A partitioned
    /// table's unique indexes must contain the partition key, so the dedupe lives beside it:
    /// `voters` holds each voter's latest ballot (one row per poll and voter) and
    /// `idempotency_keys` each key's first ballot.
    ///
    /// v2 shards what commits write by node, so that nodes never wait on each other's commits of
    /// one poll: each running node takes a number from `pollwire_nodes`, and writes only its own
    /// rows of `poll_shards` (its commit count per poll) and `tally_shards` (its counter
    /// deltas); a poll's version and counters are the sums over its shards. Whatever v1 counted
    /// becomes shard 0.
    ///
    /// v3 adds owners and scoped keys (what existed belongs to the default owner; keys made
    /// before keep every scope they had in effect) and the append-only audit log.
    static let migrations: [(String, [String])] = [
        (
            "v1",
            [
                """
                CREATE TABLE polls (
                    id text PRIMARY KEY,
                    definition text NOT NULL,
                    status text NOT NULL,
                    opens_at double precision,
                    closes_at double precision,
                    version bigint NOT NULL DEFAULT 0,
                    created_at double precision NOT NULL)
                """,
                """
                CREATE TABLE ballots (
                    seq bigint GENERATED ALWAYS AS IDENTITY,
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    voter text,
                    revision integer NOT NULL,
                    idempotency_key text,
                    answers text NOT NULL,
                    keys text NOT NULL,
                    version bigint NOT NULL,
                    created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)
                """,
                "CREATE INDEX ballots_poll ON ballots (poll_id, seq)",
                "CREATE TABLE ballots_default PARTITION OF ballots DEFAULT",
                """
                CREATE TABLE voters (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    voter text NOT NULL,
                    revision integer NOT NULL,
                    answers text NOT NULL,
                    keys text NOT NULL,
                    version bigint NOT NULL,
                    PRIMARY KEY (poll_id, voter))
                """,
                """
                CREATE TABLE idempotency_keys (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    key text NOT NULL,
                    answers text NOT NULL,
                    version bigint NOT NULL,
                    PRIMARY KEY (poll_id, key))
                """,
                """
                CREATE TABLE tallies (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    question text NOT NULL,
                    key text NOT NULL,
                    count bigint NOT NULL,
                    PRIMARY KEY (poll_id, question, key))
                """,
                "CREATE TABLE api_keys (hash text PRIMARY KEY, name text NOT NULL, created_at double precision NOT NULL)",
                "CREATE TABLE secrets (name text PRIMARY KEY, value bytea NOT NULL)",
            ]
        ),
        (
            "v2-shards",
            [
                """
                CREATE TABLE pollwire_nodes (
                    node integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    host text NOT NULL,
                    started_at timestamptz NOT NULL DEFAULT now())
                """,
                """
                CREATE TABLE poll_shards (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    node integer NOT NULL,
                    sequence bigint NOT NULL,
                    PRIMARY KEY (poll_id, node))
                """,
                "INSERT INTO poll_shards (poll_id, node, sequence) SELECT id, 0, version FROM polls WHERE version > 0",
                """
                CREATE TABLE tally_shards (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    node integer NOT NULL,
                    question text NOT NULL,
                    key text NOT NULL,
                    count bigint NOT NULL,
                    PRIMARY KEY (poll_id, node, question, key))
                """,
                """
                INSERT INTO tally_shards (poll_id, node, question, key, count)
                SELECT poll_id, 0, question, key, count FROM tallies
                """,
                "DROP TABLE tallies",
                "ALTER TABLE polls DROP COLUMN version",
            ]
        ),
        (
            "v3-owners",
            [
                """
                CREATE TABLE owners (
                    id text PRIMARY KEY,
                    name text NOT NULL,
                    created_at double precision NOT NULL)
                """,
                "INSERT INTO owners (id, name, created_at) VALUES ('default', 'default', extract(epoch from now()))",
                "ALTER TABLE polls ADD COLUMN owner_id text NOT NULL DEFAULT 'default'",
                "CREATE INDEX polls_owner ON polls (owner_id)",
                """
                ALTER TABLE api_keys ADD COLUMN id text,
                    ADD COLUMN owner_id text NOT NULL DEFAULT 'default' REFERENCES owners(id),
                    ADD COLUMN scopes text NOT NULL DEFAULT 'read,write,export,admin,operator',
                    ADD COLUMN expires_at double precision,
                    ADD COLUMN last_used_at double precision,
                    ADD COLUMN revoked_at double precision
                """,
                "UPDATE api_keys SET id = 'key_' || substr(hash, 1, 16)",
                "ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL",
                "CREATE UNIQUE INDEX api_keys_id ON api_keys (id)",
                "CREATE INDEX api_keys_owner ON api_keys (owner_id)",
                """
                CREATE TABLE audit_log (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    at double precision NOT NULL,
                    key_id text NOT NULL,
                    owner_id text NOT NULL,
                    request_id text,
                    action text NOT NULL,
                    poll_id text,
                    detail text NOT NULL)
                """,
                "CREATE INDEX audit_log_owner ON audit_log (owner_id, seq)",
                "CREATE INDEX audit_log_poll ON audit_log (poll_id, seq)",
                """
                CREATE FUNCTION pollwire_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$
                """,
                """
                CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
                FOR EACH ROW EXECUTE FUNCTION pollwire_audit_append_only()
                """,
                """
                CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                FOR EACH STATEMENT EXECUTE FUNCTION pollwire_audit_append_only()
                """,
                """
                CREATE TABLE voter_keys (
                    id text PRIMARY KEY,
                    owner_id text NOT NULL REFERENCES owners(id),
                    algorithm text NOT NULL,
                    material text NOT NULL,
                    created_at double precision NOT NULL)
                """,
                "CREATE INDEX voter_keys_owner ON voter_keys (owner_id)",
            ]
        ),
        (
            "v4-chain",
            [
                """
                ALTER TABLE ballots ADD COLUMN chain bytea, ADD COLUMN chain_position bigint,
                    ADD COLUMN chain_shard integer
                """,
                """
                ALTER TABLE poll_shards ADD COLUMN chain_head bytea,
                    ADD COLUMN chain_length bigint NOT NULL DEFAULT 0
                """,
                """
                ALTER TABLE idempotency_keys ADD COLUMN chain bytea, ADD COLUMN chain_position bigint,
                    ADD COLUMN chain_shard integer
                """,
            ]
        ),
        (
            // Ballots cast per second by counter (`WindowCount`), one row set per node as tallies
            // are; ballots stored before are counted by `countStoredWindows`, as node 0's.
            "v5-windows",
            [
                """
                CREATE TABLE ballot_windows (
                    poll_id text NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                    node integer NOT NULL,
                    second bigint NOT NULL,
                    question text NOT NULL,
                    key text NOT NULL,
                    count bigint NOT NULL,
                    PRIMARY KEY (poll_id, second, node, question, key))
                """
            ]
        ),
        (
            // A ballot's own event time (microseconds since 1970), when a batch sent one
            // (`VoteCommand.CastAt`), and whether it came too late for its window.
            "v6-cast-at",
            ["ALTER TABLE ballots ADD COLUMN cast_at bigint, ADD COLUMN late boolean NOT NULL DEFAULT false"]
        ),
    ]

    /// v4: ballots stored before chaining are chained now as shard 0 (no node writes shard 0
    /// afterwards: node numbers start at 1), in the order they were stored.
    static func chainStoredBallots(on connection: PostgresConnection, logger: Logger) async throws {
        var links: [String: ChainLink] = [:]
        var updates: (seq: [Int64], hash: [String], position: [Int64]) = ([], [], [])
        for try await (seq, poll, voter, revision, micros, answers, keys) in try await connection.query(
            """
            SELECT seq, poll_id, voter, revision::int8, (extract(epoch FROM created_at) * 1000000)::int8, answers, keys
            FROM ballots ORDER BY seq
            """, logger: logger
        ).decode((Int64, String, String?, Int64, Int64, String, String).self) {
            let digest = BallotChain.digest(
                poll: poll, voter: voter, revision: revision, storedAtMicros: micros, answers: answers, keys: keys)
            let link = (links[poll] ?? .empty).appending(digest)
            links[poll] = link
            updates.seq.append(seq)
            updates.hash.append(link.head.hex)
            updates.position.append(link.length)
        }
        guard !links.isEmpty else { return }
        try await connection.query(
            """
            UPDATE ballots SET chain = decode(u.h, 'hex'), chain_position = u.pos, chain_shard = 0
            FROM UNNEST(\(updates.seq)::int8[], \(updates.hash)::text[], \(updates.position)::int8[]) AS u(s, h, pos)
            WHERE ballots.seq = u.s
            """, logger: logger)
        let polls = Array(links.keys)
        try await connection.query(
            """
            INSERT INTO poll_shards (poll_id, node, sequence, chain_head, chain_length)
            SELECT p, 0, 0, decode(h, 'hex'), l
            FROM UNNEST(\(polls)::text[], \(polls.map { links[$0]!.head.hex })::text[],
                \(polls.map { links[$0]!.length })::int8[]) AS u(p, h, l)
            ON CONFLICT (poll_id, node) DO UPDATE SET chain_head = excluded.chain_head,
                chain_length = excluded.chain_length
            """, logger: logger)
    }

    /// v5: the window counts of ballots stored before, as node 0's (as `chainStoredBallots`).
    static func countStoredWindows(on connection: PostgresConnection, logger: Logger) async throws {
        var counts: [String: CastWindows.Recount] = [:]
        for try await (poll, micros, keys) in try await connection.query(
            "SELECT poll_id, (extract(epoch FROM created_at) * 1000000)::int8, keys FROM ballots ORDER BY seq",
            logger: logger
        ).decode((String, Int64, String).self) {
            counts[poll, default: .init()].add(micros: micros, keys: keys)
        }
        var rows: (poll: [String], second: [Int64], question: [String], key: [String], count: [Int64]) = (
            [], [], [], [], []
        )
        for (poll, recount) in counts {
            for row in recount.rows() {
                rows.poll.append(poll)
                rows.second.append(row.second)
                rows.question.append(row.key.question)
                rows.key.append(row.key.key)
                rows.count.append(row.count)
            }
        }
        guard !rows.poll.isEmpty else { return }
        try await connection.query(
            """
            INSERT INTO ballot_windows (poll_id, node, second, question, key, count)
            SELECT p, 0, s, q, k, n FROM UNNEST(\(rows.poll)::text[], \(rows.second)::int8[], \(rows.question)::text[],
                \(rows.key)::text[], \(rows.count)::int8[]) AS u(p, s, q, k, n)
            """, logger: logger)
    }

    /// Takes a new node number (a shard of its own, see `migrations`) for a process that is about
    /// to commit votes.
    public func registerNode() async throws -> Int32 {
        let host = ProcessInfo.processInfo.hostName
        let rows = try await self.client.query(
            "INSERT INTO pollwire_nodes (host) VALUES (\(host)) RETURNING node", logger: self.logger
        ).decode(Int32.self)
        for try await node in rows { return node }
        throw PostgresStoreError("PostgreSQL gave no node number")
    }
}
