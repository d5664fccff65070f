public import Foundation
public import Logging
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
    ]

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
