import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The built `pollwire` binary, run as a real process on 127.0.0.1 with port 0.
final class ServerProcess: @unchecked Sendable {
    let process: Process
    let port: Int
    let output: OutputCollector

    /// The binary next to the test bundle (`.build/<config>/pollwire`), or `PWTEST_BINARY`.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["PWTEST_BINARY"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("pollwire")
    }

    /// Runs `pollwire` with `arguments` to completion and returns its standard output.
    static func runTool(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let (status, output) = try runPollwire(arguments, environment: environment, errorsToo: false)
        #expect(status == 0, "pollwire \(arguments) exited \(status)")
        return output
    }

    /// Starts `pollwire serve` and waits until it prints the port it listens on.
    static func start(
        dataDir: URL, command: String = "serve", arguments: [String] = [], environment: [String: String] = [:],
        launcher: [String] = []
    ) async throws
        -> ServerProcess
    {
        let process = Process()
        // A launcher (`taskset -c 0`) execs pollwire in its own process: the pid stays pollwire's.
        process.executableURL = launcher.first.map { URL(fileURLWithPath: $0) } ?? Self.binary
        var environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        environment["POLLWIRE_LOG_LEVEL"] = environment["POLLWIRE_LOG_LEVEL"] ?? "warning"
        process.environment = environment
        process.arguments =
            launcher.dropFirst() + (launcher.isEmpty ? [] : [Self.binary.path])
            + [command, "--data-dir", dataDir.path, "--http-host", "127.0.0.1"] + arguments
            + (arguments.contains("--http-port") ? [] : ["--http-port", "0"])
            // Every client here is 127.0.0.1: the per-address limit is tested in PollwireHTTPTests.
            + ["--ratelimit-allow-list", "127.0.0.1"]
        let collector = OutputCollector()
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { handle in collector.append(handle.availableData) }
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let port = collector.port { return ServerProcess(process: process, port: port, output: collector) }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.terminate()
        throw ServerProcessError(message: "pollwire did not start: \(collector.text)")
    }

    init(process: Process, port: Int, output: OutputCollector) {
        self.process = process
        self.port = port
        self.output = output
    }

    func kill() {
        Foundation.kill(self.process.processIdentifier, SIGKILL)
        self.process.waitUntilExit()
    }

    func terminate() {
        Foundation.kill(self.process.processIdentifier, SIGTERM)
    }

    /// Waits for the process to exit (at most `timeout`) and returns its exit status.
    func waitForExit(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while self.process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        return self.process.isRunning ? nil : self.process.terminationStatus
    }

    /// A connected HTTP client (one connection; make one per concurrent worker).
    func client() -> TestClient {
        let client = TestClient(host: "127.0.0.1", port: self.port, configuration: .init(timeout: .seconds(10)))
        client.connect()
        return client
    }
}

struct ServerProcessError: Error {
    let message: String
}

/// Collects a process's output and finds the port in "listening on http(s)://127.0.0.1:PORT".
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ chunk: Data) { self.lock.withLock { self.data.append(chunk) } }

    var text: String { self.lock.withLock { String(decoding: self.data, as: UTF8.self) } }

    var port: Int? {
        let text = self.text
        guard
            let range = text.range(of: "listening on http://127.0.0.1:")
                ?? text.range(of: "listening on https://127.0.0.1:")
        else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}

extension TestClient {
    func json(
        _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, headers: HTTPFields = [:]
    ) async throws -> TestClient.Response {
        var fields = headers
        if body != nil { fields[.contentType] = "application/json" }
        return try await self.execute(
            .init(
                uri, method: method, authority: "127.0.0.1", headers: fields, body: body.map { ByteBuffer(string: $0) })
        )
    }
}

extension TestClient.Response {
    var text: String { self.body.map { String(buffer: $0) } ?? "" }

    func object() throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(self.text.utf8)) as? [String: Any])
    }
}

func temporaryDirectory(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-\(name)-\(UUID().uuidString)")
}
