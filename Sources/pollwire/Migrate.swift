import ArgumentParser
import PollwireSQLite

/// `pollwire migrate`: creates or upgrades the database schema, then exits.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or upgrade the database schema.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let store = try StoreSettings(reader: try await makeConfigReader(self.options))
        let database = try store.open()
        print("migrated \(database.path)")
    }
}
