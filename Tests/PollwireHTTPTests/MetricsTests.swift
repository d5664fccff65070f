import Foundation
import HTTPTypes
import PollwireHTTP
import Testing

/// `/metrics` passes `promtool check metrics` (Prometheus's own linter, from Debian's
/// `prometheus` package, which scripts/test installs): every family has `# HELP` and `# TYPE`,
/// names and units as Prometheus expects.
@Suite struct MetricsTests {
    @Test func everyFamilyIsDescribedAndPromtoolAgrees() async throws {
        var settings = PollwireSettings()
        settings.purge.url = "http://127.0.0.1:9/v1/polls/{poll}/results"
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "m", "answers": {"q1": ["a"]}}"#)
            _ = try await server.request(.get, "/v1/polls/\(poll)/results")
            let text = try await server.request(.get, "/metrics").text
            let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map {
                String($0.split(separator: " ")[2])
            }
            #expect(types.count >= 15, "\(types)")
            for name in types {
                #expect(text.contains("# HELP \(name) "), "\(name) has a HELP line")
            }
            let promtool = "/usr/bin/promtool"
            try #require(FileManager.default.isExecutableFile(atPath: promtool), "scripts/test installs prometheus")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: promtool)
            process.arguments = ["check", "metrics"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            input.fileHandleForWriting.write(Data(text.utf8))
            try input.fileHandleForWriting.close()
            let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "promtool check metrics: \(said)")
        }
    }
}
