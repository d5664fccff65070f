import ArgumentParser
import Configuration
import Foundation
import Hummingbird
import Logging
import PollwireCore
import PollwireEngine
import PollwireHTTP
import PollwirePostgres
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `pollwire serve`: the server, on the embedded SQLite store or on PostgreSQL (`--store postgres://...`).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default command).")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        try await runServer(reader: try await makeConfigReader(self.options))
    }
}

/// Opens the store, makes the first API key if there is none, and runs the server until
/// SIGTERM or SIGINT. `extra` adds services that start after the server's own (the demo's voters).
func runServer(
    reader: ConfigReader,
    extra: @escaping @Sendable (PollwireApplication.Parts, any PollStore, BoundPort) -> [any Service] = { _, _, _ in []
    }
) async throws {
    EventLoops.sizeToAffinity()
    let logger = makeLogger(reader, label: "pollwire")
    let store = try StoreSettings(reader: reader)
    var configured = PollwireSettings(reader: reader)
    // A shared store can hang on a dead connection: answer votes within 2 s unless told otherwise.
    if store.isPostgres, configured.ingest.commitDeadline == nil { configured.ingest.commitDeadline = .seconds(2) }
    let settings = configured
    try await store.withStores(logger: logger) { stores in
        try await serve(stores, settings: settings, location: store.location, logger: logger, extra: extra)
    }
}

/// Runs the server on open stores until SIGTERM or SIGINT.
private func serve(
    _ stores: OpenStores, settings: PollwireSettings, location: String, logger: Logger,
    extra: @escaping @Sendable (PollwireApplication.Parts, any PollStore, BoundPort) -> [any Service]
) async throws {
    let pollStore = stores.pollStore
    let bound = BoundPort()
    if try await pollStore.apiKeyCount() == 0 {
        // The operator's key: every scope, on the default owner.
        let now = Date()
        let (secret, key) = APIKeys.make(
            owner: Poll.defaultOwner, name: "first admin key", scopes: Set(KeyScope.allCases), expiresAt: nil, at: now)
        try await pollStore.insertAPIKey(
            key, hash: APIKeys.hash(secret),
            audit: AuditEntry(
                at: now, key: "cli", owner: key.owner, requestID: nil, action: "key.create", detail: APIKeys.detail(key)
            ))
        say("Created the first admin API key (shown once, store it now):\n  \(secret)")
    }
    var feed: (@Sendable (ChangeSink) -> any ChangeFeed)?
    if let database = stores.postgres {
        feed = { sink in PostgresChangeFeed(database: database, sink: sink) }
    }
    let (app, parts) = try await PollwireApplication.make(
        settings: settings, pollStore: pollStore, voteStore: stores.voteStore, logger: logger, changeFeed: feed,
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? settings.port
            bound.set(port)
            say(
                "Pollwire listening on \(settings.tls == nil ? "http" : "https")://\(settings.host):\(port) (data: \(location))"
            )
        })
    var group = ServiceGroupConfiguration(
        services: [app] + extra(parts, pollStore, bound), gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger)
    // SIGTERM: stop accepting, commit and answer what is in flight; past 9 s, cancel.
    group.maximumGracefulShutdownDuration = .seconds(9)
    try await ServiceGroup(configuration: group).run()
}

/// The port the server bound (known once it runs; `http.port` may be 0).
final class BoundPort: Sendable {
    private let port = Mutex<Int?>(nil)

    func set(_ port: Int) { self.port.withLock { $0 = port } }

    /// Waits until the server is listening.
    func wait() async throws -> Int {
        while true {
            if let port = self.port.withLock({ $0 }) { return port }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
