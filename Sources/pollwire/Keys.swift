import ArgumentParser
import Foundation
import PollwireHTTP
import PollwireSQLite

/// `pollwire keys create`: API keys for the management API.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key and print it once; only its SHA-256 hash is stored.")

        @Option(help: "A name to remember the key by.")
        var name: String = "api key"

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let store = try StoreSettings(reader: try await makeConfigReader(self.options))
            let pollStore = SQLitePollStore(database: try store.open())
            let key = APIKeys.generate()
            try await pollStore.insertAPIKey(hash: APIKeys.hash(key), name: self.name, createdAt: Date())
            print(key)
        }
    }
}
