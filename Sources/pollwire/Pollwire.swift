import ArgumentParser
import Foundation

/// Writes a line to standard output at once (unbuffered, also when stdout is a pipe).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// `pollwire`: the server and its tools.
@main
struct Pollwire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A real-time polling and survey backend.",
        subcommands: [
            Serve.self, Demo.self, Migrate.self, Keys.self, Owners.self, Audit.self, Verify.self, Export.self,
        ],
        defaultSubcommand: Serve.self)
}

/// Options every command shares: where configuration comes from.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config-file"), help: "A JSON configuration file (keys as in docs/configuration.md).")
    var configFile: String?

    @Argument(
        parsing: .allUnrecognized,
        help: "Configuration keys as flags, e.g. --http-port 9000 --sqlite-synchronous NORMAL.")
    var settings: [String] = []
}
