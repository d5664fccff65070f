import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The built `pollwire` refuses configuration it does not understand, from every source, before
/// it opens or binds anything: each case exits non-zero and names the key.
@Suite struct ConfigurationTests {
    struct Case: Sendable, CustomStringConvertible {
        let arguments: [String]
        var environment: [String: String] = [:]
        var file: String?
        /// Words the message must contain.
        let says: [String]
        var description: String { "\(self.arguments) \(self.environment) \(self.file ?? "")" }
    }

    static let cases: [Case] = [
        Case(arguments: ["serve", "--port", "9999"], says: ["unknown option --port"]),
        Case(
            arguments: ["serve", "--htp-port", "9000"], says: ["unknown option --htp-port", "did you mean --http-port"]),
        Case(arguments: ["serve", "stray"], says: ["unexpected argument \"stray\""]),
        Case(arguments: ["serve", "--http-port", "abc"], says: ["--http-port", "whole number from 0 to 65535"]),
        Case(arguments: ["serve", "--http-port", "70000"], says: ["--http-port", "70000", "0 to 65535"]),
        Case(arguments: ["serve", "--http-port", "65536"], says: ["--http-port", "65536"]),
        Case(arguments: ["serve", "--http-port", "1", "2"], says: ["unexpected argument \"2\""]),
        Case(arguments: ["serve", "--http-max-body-bytes", "-5"], says: ["--http-max-body-bytes", "-5"]),
        Case(arguments: ["serve", "--admission-max-in-flight", "0"], says: ["--admission-max-in-flight", "from 1"]),
        Case(arguments: ["serve", "--sqlite-synchronous", "OFF"], says: ["--sqlite-synchronous", "FULL, NORMAL"]),
        Case(arguments: ["serve", "--http-http2", "maybe"], says: ["--http-http2", "true or false"]),
        Case(arguments: ["serve"], environment: ["POLLWIRE_HTTP_PORT": "abc"], says: ["POLLWIRE_HTTP_PORT", "abc"]),
        Case(
            arguments: ["serve"], environment: ["POLLWIRE_HTTP_PROT": "1"],
            says: ["POLLWIRE_HTTP_PROT", "POLLWIRE_HTTP_PORT"]),
        Case(arguments: ["serve"], file: #"{"http": {"prot": 9000}}"#, says: ["\"http.prot\"", "http.port"]),
        Case(arguments: ["serve"], file: #"{"http": {"port": "9000"}}"#, says: ["\"http.port\"", "whole number"]),
        Case(arguments: ["serve"], file: #"{"http": {"port": 90.5}}"#, says: ["\"http.port\""]),
        Case(arguments: ["serve"], file: #"[1, 2]"#, says: ["JSON object"]),
        Case(arguments: ["serve", "--tls-certificate", "/tmp/cert.pem"], says: ["tls.certificate and tls.key"]),
        Case(arguments: ["serve", "--analytics-windows", "10s,7x"], says: ["--analytics-windows", "window widths"]),
        Case(arguments: ["serve", "--analytics-windows", "2d"], says: ["--analytics-windows", "up to 1 day"]),
        Case(
            arguments: ["serve"], environment: ["POLLWIRE_ANALYTICS_WINDOWS": "0s"],
            says: ["POLLWIRE_ANALYTICS_WINDOWS"]),
        Case(arguments: ["serve"], file: #"{"analytics": {"windows": ["1m", 5]}}"#, says: ["\"analytics.windows\""]),
        Case(arguments: ["migrate", "--htp-port", "9000"], says: ["unknown option --htp-port"]),
        Case(arguments: ["keys", "create", "--sqlite-synchronus", "FULL"], says: ["--sqlite-synchronus"]),
    ]

    @Test(arguments: Self.cases)
    func refusedBeforeAnythingIsOpened(_ refused: Case) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var arguments = refused.arguments + ["--data-dir", directory.appendingPathComponent("data").path]
        if let file = refused.file {
            let path = directory.appendingPathComponent("pollwire.json")
            try Data(file.utf8).write(to: path)
            arguments += ["--config-file", path.path]
        }
        let (status, output) = try runPollwire(arguments, environment: refused.environment)
        #expect(status != 0, "\(refused): exit status \(status)")
        for words in refused.says {
            #expect(output.contains(words), "\(refused): \(output)")
        }
        #expect(!output.contains("listening"), "\(refused): \(output)")
        // Nothing opened: not even the data directory was made.
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("data").path))
    }

    /// Valid settings from all three sources together start the server.
    @Test func validSettingsFromEverySourceStart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("pollwire.json")
        try Data(
            #"{"results": {"maxAge": 7}, "ratelimit": {"trustedProxies": ["10.0.0.1"]}, "http": {"http2": false}}"#.utf8
        )
        .write(to: file)
        let server = try await ServerProcess.start(
            dataDir: directory.appendingPathComponent("data"),
            arguments: [
                "--config-file", file.path, "--ingest-max-batch", "512", "--compression-web-socket-deflate",
                "--analytics-windows", "2s,15m",
            ],
            environment: ["POLLWIRE_RESULTS_SHARED_MAX_AGE": "9", "POLLWIRE_LIVE_HEARTBEAT_SECONDS": "2.5"])
        defer { server.terminate() }
        #expect(server.port > 0)
        // The timeline comes in the widths configured, the first of them by default.
        let client = server.client()
        let key = try ServerProcess.runTool([
            "keys", "create", "--data-dir", directory.appendingPathComponent("data").path,
        ])
        .trimmingCharacters(in: .whitespacesAndNewlines)
        let created = try await client.json(
            .post, "/v1/polls",
            #"{"title": "?", "questions": [{"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]}"#,
            headers: [.authorization: "Bearer \(key)"])
        #expect(created.status == .created, "\(created.text)")
        let poll = try #require(try created.object()["id"] as? String)
        let byDefault = try await client.json(.get, "/v1/polls/\(poll)/timeline")
        #expect(try byDefault.object()["window"] as? String == "2s")
        #expect(try await client.json(.get, "/v1/polls/\(poll)/timeline?window=15m").status == .ok)
        let refused = try await client.json(.get, "/v1/polls/\(poll)/timeline?window=10s")
        #expect(refused.status == .unprocessableContent)
        #expect(refused.text.contains("2s, 15m"), "\(refused.text)")
        try await client.shutdown()
    }
}

/// Runs the built `pollwire` to its end (at most 30 s): exit status and what it printed (standard
/// output, and standard error too unless `errorsToo` is false).
func runPollwire(
    _ arguments: [String], environment: [String: String], errorsToo: Bool = true
) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = ServerProcess.binary
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = errorsToo ? pipe : FileHandle.nullDevice
    try process.run()
    let watchdog = DispatchWorkItem { process.terminate() }
    DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    watchdog.cancel()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
