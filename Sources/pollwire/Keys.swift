import ArgumentParser
import Foundation
import PollwireEngine
import PollwireHTTP

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
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let name = self.name
            let key = APIKeys.generate()
            try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await stores.pollStore.insertAPIKey(hash: APIKeys.hash(key), name: name, createdAt: Date())
            }
            print(key)
        }
    }
}
