import Configuration
import Foundation
import Logging
import PollwireCore
import PollwireEngine
import PollwireHTTP
import PollwirePostgres
import PollwireSQLite
import SystemPackage

/// Reads configuration: command-line flags, then `POLLWIRE_*` environment variables, then the
/// optional JSON file, then the defaults in the code. docs/configuration.md lists every key.
///
/// Every source is checked first (`ConfigCatalog`): an unknown key or a value out of range
/// stops the command before it opens or binds anything.
func makeConfigReader(_ options: ConfigOptions) async throws -> ConfigReader {
    let environment = ProcessInfo.processInfo.environment
    let path = options.configFile ?? environment["POLLWIRE_CONFIG_FILE"]
    try ConfigCatalog.check(
        arguments: options.settings, environment: environment, file: try path.map(ConfigCatalog.readFile))
    var providers: [any ConfigProvider] = [
        CommandLineArgumentsProvider(arguments: ["pollwire"] + options.settings),
        EnvironmentVariablesProvider().prefixKeys(with: "pollwire"),
    ]
    if let path {
        providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(path)))
    }
    return ConfigReader(providers: providers)
}

/// Which store: the embedded SQLite file (default) or PostgreSQL (`store` = `postgres://...`).
struct StoreSettings {
    /// `store`: `sqlite` (the default) or a `postgres://user[:password]@host[:port]/database` URL.
    var url: String?
    /// `data.dir`: directory of the SQLite database. Default `./pollwire-data`.
    var dataDirectory: String
    /// `sqlite.synchronous`: FULL (default) or NORMAL.
    var synchronous: SQLiteDatabase.Synchronous
    /// `postgres.maxConnections`: the pool's size. Default 8.
    var maxConnections: Int
    /// `postgres.partitionMonthsAhead`: monthly ballot partitions created ahead. Default 3.
    var partitionMonthsAhead: Int
    /// `ingest.ballotChain`: whether stored ballots are chained (default true; false only to
    /// measure what chaining costs: ballots stored so do not verify).
    var ballotChain: Bool

    init(reader: ConfigReader) throws {
        let url = reader.string(forKey: "store", default: "sqlite")
        self.url = url == "sqlite" ? nil : url
        self.dataDirectory = reader.string(forKey: "data.dir", default: "./pollwire-data")
        let synchronous = reader.string(forKey: "sqlite.synchronous", default: "FULL").uppercased()
        guard let value = SQLiteDatabase.Synchronous(rawValue: synchronous) else {
            throw ConfigurationError("sqlite.synchronous must be FULL or NORMAL, not \(synchronous)")
        }
        self.synchronous = value
        self.maxConnections = reader.int(forKey: "postgres.maxConnections", default: 8)
        self.partitionMonthsAhead = reader.int(forKey: "postgres.partitionMonthsAhead", default: 3)
        self.ballotChain = reader.bool(forKey: "ingest.ballotChain", default: true)
    }

    var isPostgres: Bool { self.url != nil }

    var databasePath: String { URL(fileURLWithPath: self.dataDirectory).appendingPathComponent("pollwire.sqlite").path }

    /// Where the data is, for the log: the SQLite path, or the PostgreSQL URL without its password.
    var location: String {
        guard let url = self.url, var components = URLComponents(string: url) else { return self.databasePath }
        if components.password != nil { components.password = "***" }
        return components.string ?? url
    }

    func open() throws -> SQLiteDatabase {
        try SQLiteDatabase(path: self.databasePath, synchronous: self.synchronous)
    }

    /// The stores, open (and migrated) for the length of `body`. PostgreSQL's pool runs beside it.
    func withStores<Value: Sendable>(
        logger: Logger, migrate: Bool = true, _ body: @escaping @Sendable (OpenStores) async throws -> Value
    ) async throws -> Value {
        guard let url = self.url else {
            let database = try self.open()
            return try await body(
                OpenStores(
                    pollStore: SQLitePollStore(database: database),
                    voteStore: SQLiteVoteStore(database: database, chaining: self.ballotChain), postgres: nil))
        }
        let database = try PostgresDatabase(
            url: url, maxConnections: self.maxConnections, partitionMonthsAhead: self.partitionMonthsAhead,
            logger: Logger(label: "pollwire.postgres"))
        return try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask {
                await database.run()
                return nil
            }
            group.addTask {
                if migrate { try await database.migrate() }
                return try await body(
                    OpenStores(
                        pollStore: PostgresPollStore(database: database),
                        voteStore: PostgresVoteStore(database: database, chaining: self.ballotChain),
                        postgres: database))
            }
            defer { group.cancelAll() }
            while let value = try await group.next() {
                if let value { return value }
            }
            throw ConfigurationError("the PostgreSQL client stopped")
        }
    }
}

/// The stores a command works with.
struct OpenStores: Sendable {
    let pollStore: any PollStore
    let voteStore: any VoteStore
    /// Set in cluster mode: for the change feed.
    let postgres: PostgresDatabase?
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension PollwireSettings {
    /// Settings from configuration; each key's default is the struct's.
    init(reader: ConfigReader) {
        self.init()
        self.host = reader.string(forKey: "http.host", default: self.host)
        self.port = reader.int(forKey: "http.port", default: self.port)
        self.maxBodyBytes = reader.int(forKey: "http.maxBodyBytes", default: self.maxBodyBytes)
        self.maxBatchBodyBytes = reader.int(forKey: "http.maxBatchBodyBytes", default: self.maxBatchBodyBytes)
        self.maxBatchBallots = reader.int(forKey: "http.maxBatchBallots", default: self.maxBatchBallots)
        self.requestReadTimeout = .milliseconds(
            Int64(reader.double(forKey: "http.requestReadTimeout", default: 10) * 1000))
        self.idleTimeout = .milliseconds(Int64(reader.double(forKey: "http.idleTimeout", default: 60) * 1000))
        self.resultsCache = ResultsCache(
            maxAge: reader.int(forKey: "results.maxAge", default: self.resultsCache.maxAge),
            sharedMaxAge: reader.int(forKey: "results.sharedMaxAge", default: self.resultsCache.sharedMaxAge),
            staleWhileRevalidate: reader.int(
                forKey: "results.staleWhileRevalidate", default: self.resultsCache.staleWhileRevalidate))
        self.latestTextLimit = reader.int(forKey: "results.latestText", default: self.latestTextLimit)
        self.timelineWindows = reader.stringArray(forKey: "analytics.windows", default: self.timelineWindows)
        self.allowedLatenessSeconds = reader.int(
            forKey: "analytics.allowedLatenessSeconds", default: self.allowedLatenessSeconds)
        self.retryAfterSeconds = reader.int(forKey: "ingest.retryAfter", default: self.retryAfterSeconds)
        self.ingest = VoteIngestor.Configuration(
            maxBatch: reader.int(forKey: "ingest.maxBatch", default: self.ingest.maxBatch),
            maxDelay: .microseconds(Int64(reader.double(forKey: "ingest.maxDelayMs", default: 0) * 1000)),
            queueCapacity: reader.int(forKey: "ingest.queueCapacity", default: self.ingest.queueCapacity),
            commitDeadline: reader.double(forKey: "ingest.commitDeadlineSeconds").map {
                .milliseconds(Int64($0 * 1000))
            },
            breakerThreshold: reader.int(forKey: "ingest.breakerThreshold", default: self.ingest.breakerThreshold),
            breakerCooldown: .milliseconds(
                Int64(reader.double(forKey: "ingest.breakerCooldownSeconds", default: 2) * 1000)))
        self.live = Hub.Configuration(
            publishInterval: .microseconds(Int64(reader.double(forKey: "live.publishIntervalMs", default: 50) * 1000)),
            heartbeatInterval: .milliseconds(Int64(reader.double(forKey: "live.heartbeatSeconds", default: 15) * 1000)),
            stuckDeadline: .milliseconds(Int64(reader.double(forKey: "live.stuckSeconds", default: 10) * 1000)),
            shards: reader.int(forKey: "live.shards", default: 16))
        func rule(_ name: String, _ fallback: RateLimiter.Rule) -> RateLimiter.Rule {
            RateLimiter.Rule(
                rate: reader.double(forKey: ConfigKey("ratelimit.\(name)Rate"), default: fallback.rate),
                burst: reader.int(forKey: ConfigKey("ratelimit.\(name)Burst"), default: fallback.burst))
        }
        var limits = RateLimitSettings()
        limits.votesPerIP = rule("votesPerIp", limits.votesPerIP)
        limits.votesPerVoter = rule("votesPerVoter", limits.votesPerVoter)
        limits.deviceTokensPerIP = rule("deviceTokensPerIp", limits.deviceTokensPerIP)
        limits.managementPerKey = rule("managementPerKey", limits.managementPerKey)
        limits.invalidKeysPerIP = rule("invalidKeysPerIp", limits.invalidKeysPerIP)
        limits.proofsPerIP = rule("proofsPerIp", limits.proofsPerIP)
        limits.timelinesPerIP = rule("timelinesPerIp", limits.timelinesPerIP)
        limits.allowList = Set(reader.stringArray(forKey: "ratelimit.allowList", default: []))
        limits.trustedProxies = Set(reader.stringArray(forKey: "ratelimit.trustedProxies", default: []))
        limits.capacity = reader.int(forKey: "ratelimit.capacity", default: limits.capacity)
        self.rateLimits = limits
        self.admission.maxInFlight = reader.int(forKey: "admission.maxInFlight", default: self.admission.maxInFlight)
        self.admission.maxManagementInFlight = reader.int(
            forKey: "admission.maxManagementInFlight", default: self.admission.maxManagementInFlight)
        self.admission.retryAfterSeconds = reader.int(
            forKey: "admission.retryAfter", default: self.admission.retryAfterSeconds)
        self.admission.maxLoopDelayMs = reader.double(
            forKey: "admission.maxLoopDelayMs", default: self.admission.maxLoopDelayMs)
        self.purge.url = reader.string(forKey: "purge.url")
        self.purge.method = reader.string(forKey: "purge.method", default: self.purge.method).uppercased()
        self.purge.interval = .milliseconds(Int64(reader.double(forKey: "purge.intervalSeconds", default: 1) * 1000))
        self.purge.maxPending = reader.int(forKey: "purge.maxPending", default: self.purge.maxPending)
        self.compression.minimumBytes = reader.int(
            forKey: "compression.minimumBytes", default: self.compression.minimumBytes)
        self.compression.webSocketDeflate = reader.bool(
            forKey: "compression.webSocketDeflate", default: self.compression.webSocketDeflate)
        self.http2 = reader.bool(forKey: "http.http2", default: self.http2)
        self.webDirectory = reader.string(forKey: "web.dir") ?? Self.findWebDirectory()
        if let certificate = reader.string(forKey: "tls.certificate"), let key = reader.string(forKey: "tls.key") {
            self.tls = TLSSettings(certificatePath: certificate, keyPath: key)
        }
    }
}

extension PollwireSettings {
    /// `Web/` in the working directory, beside the binary's package (`.build/<config>/pollwire`
    /// in a checkout), or where the container image puts it.
    static func findWebDirectory() -> String? {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [FileManager.default.currentDirectoryPath + "/Web", "/usr/share/pollwire/web"]
        var directory = binary.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("Web").path)
            directory = directory.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/embed/pollwire.js") }
    }
}

func makeLogger(_ reader: ConfigReader, label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: reader.string(forKey: "log.level", default: "info").lowercased()) ?? .info
    return logger
}
