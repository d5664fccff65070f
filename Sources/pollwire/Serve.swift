import ArgumentParser
import Foundation
import Hummingbird
import Logging
import PollwireHTTP
import PollwireSQLite
import ServiceLifecycle
import UnixSignals

/// `pollwire serve`: the server on the embedded SQLite store.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default command).")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let reader = try await makeConfigReader(self.options)
        let logger = makeLogger(reader, label: "pollwire")
        let store = try StoreSettings(reader: reader)
        let settings = PollwireSettings(reader: reader)
        let database = try store.open()
        let pollStore = SQLitePollStore(database: database)

        if try await pollStore.apiKeyCount() == 0 {
            let key = APIKeys.generate()
            try await pollStore.insertAPIKey(hash: APIKeys.hash(key), name: "first admin key", createdAt: Date())
            say("Created the first admin API key (shown once, store it now):\n  \(key)")
        }

        let (app, _) = try await PollwireApplication.make(
            settings: settings, pollStore: pollStore, voteStore: SQLiteVoteStore(database: database),
            logger: logger,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? settings.port
                say("Pollwire listening on http://\(settings.host):\(port) (data: \(store.databasePath))")
            })
        var group = ServiceGroupConfiguration(
            services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // SIGTERM: stop accepting, commit and answer what is in flight; past 9 s, cancel.
        group.maximumGracefulShutdownDuration = .seconds(9)
        try await ServiceGroup(configuration: group).run()
    }
}
