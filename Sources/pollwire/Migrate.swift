import ArgumentParser

/// `pollwire migrate`: creates or upgrades the database schema (SQLite or PostgreSQL), then exits.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or upgrade the database schema.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let reader = try await makeConfigReader(self.options)
        let store = try StoreSettings(reader: reader)
        try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { _ in }
        print("migrated \(store.location)")
    }
}
