import Foundation
import HTTPTypes
import HummingbirdTesting
import Synchronization
import Testing

/// What the SIGTERM test's clients saw.
final class Record: Sendable {
    let acknowledged = Mutex<Set<String>>([])
    let refused = Atomic<Int>(0)
    let started = Mutex<ContinuousClock.Instant?>(nil)
}

@Suite(.serialized) struct LifecycleTests {
    static let poll = """
        {"title": "Lunch?", "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
          "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}]}
        """

    /// SIGTERM with votes in flight: every answered vote is stored, the rest are refused
    /// cleanly, and the process exits 0 within 10 s.
    @Test func sigtermCommitsWhatIsInFlightAndExits() async throws {
        let directory = temporaryDirectory("sigterm")
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ServerProcess.runTool(["keys", "create", "--data-dir", directory.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try await ServerProcess.start(dataDir: directory)
        let admin = server.client()
        let pollID =
            try await admin.json(.post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(key)"])
            .object()["id"] as! String
        try await admin.shutdown()

        let record = Record()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    let client = server.client()
                    for n in 0..<100_000 {
                        let voter = "\(worker)-\(n)"
                        guard
                            let response = try? await client.json(
                                .post, "/v1/polls/\(pollID)/votes",
                                #"{"voter": "\#(voter)", "answers": {"q1": ["a"]}}"#)
                        else { break }
                        if response.status == .created {
                            _ = record.acknowledged.withLock { $0.insert("v:" + voter) }
                        } else {
                            #expect(response.status == .serviceUnavailable, "\(response.text)")
                            record.refused.add(1, ordering: .relaxed)
                        }
                    }
                    try? await client.shutdown()
                }
            }
            try await Task.sleep(for: .milliseconds(400))
            record.started.withLock { $0 = .now }
            server.terminate()
            try await group.waitForAll()
        }
        let status = try await server.waitForExit(timeout: .seconds(10))
        let elapsed = ContinuousClock.now - record.started.withLock { $0! }
        #expect(status == 0, "exit status \(String(describing: status)) after \(elapsed)")
        #expect(elapsed < .seconds(10))
        let stored = try StoredState(dataDir: directory, pollID: pollID)
        let votes = record.acknowledged.withLock { $0 }
        #expect(votes.count > 0)
        #expect(votes.isSubset(of: Set(stored.answers.keys)))
        #expect(stored.tallies == stored.recount)
    }

    /// Flags beat POLLWIRE_* environment variables, which beat the file, which beats defaults.
    /// One event loop per CPU the process may run on: pinned to one core (as the benchmarks pin
    /// it), one loop, not one per core of the machine taking turns on that core.
    @Test func eventLoopsFollowTheAffinityMask() async throws {
        guard ProcessInfo.processInfo.activeProcessorCount >= 2,
            FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        else { return }
        func loops(_ server: ServerProcess) throws -> Int {
            let tasks = "/proc/\(server.process.processIdentifier)/task"
            return try FileManager.default.contentsOfDirectory(atPath: tasks).filter { task in
                let name = (try? String(contentsOfFile: "\(tasks)/\(task)/comm", encoding: .utf8)) ?? ""
                return name.hasPrefix("NIO-SGLTN")
            }.count
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-loops-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let pinned = try await ServerProcess.start(
            dataDir: directory.appendingPathComponent("a"), launcher: ["/usr/bin/taskset", "-c", "0"])
        #expect(try loops(pinned) == 1)
        pinned.terminate()
        _ = try await pinned.waitForExit(timeout: .seconds(10))
        let free = try await ServerProcess.start(dataDir: directory.appendingPathComponent("b"))
        #expect(try loops(free) == ProcessInfo.processInfo.activeProcessorCount)
        free.terminate()
        _ = try await free.waitForExit(timeout: .seconds(10))
    }

    @Test func configurationLayers() async throws {
        let directory = temporaryDirectory("config")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("pollwire.json")
        try Data(#"{"results": {"maxAge": 7}}"#.utf8).write(to: file)
        let layers: [([String], [String: String], String)] = [
            ([], [:], "public, max-age=1, s-maxage=1, stale-while-revalidate=5"),
            (["--config-file", file.path], [:], "public, max-age=7, s-maxage=1, stale-while-revalidate=5"),
            (
                ["--config-file", file.path], ["POLLWIRE_RESULTS_MAX_AGE": "8"],
                "public, max-age=8, s-maxage=1, stale-while-revalidate=5"
            ),
            (
                ["--config-file", file.path, "--results-max-age", "9"], ["POLLWIRE_RESULTS_MAX_AGE": "8"],
                "public, max-age=9, s-maxage=1, stale-while-revalidate=5"
            ),
        ]
        let key = try ServerProcess.runTool(["keys", "create", "--data-dir", directory.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var pollID: String?
        for (arguments, environment, expected) in layers {
            let server = try await ServerProcess.start(
                dataDir: directory, arguments: arguments, environment: environment)
            let client = server.client()
            if pollID == nil {
                pollID =
                    try await client.json(.post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(key)"])
                    .object()["id"] as? String
            }
            let response = try await client.json(.get, "/v1/polls/\(pollID!)/results")
            #expect(response.headers[.cacheControl] == expected, "\(arguments) \(environment)")
            try await client.shutdown()
            server.terminate()
            #expect(try await server.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    /// `keys create` prints a key that opens the management API; only its hash is stored.
    @Test func keysCreatePrintsAWorkingKeyOnce() async throws {
        let directory = temporaryDirectory("keys")
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ServerProcess.runTool(["keys", "create", "--name", "ci", "--data-dir", directory.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.hasPrefix("pw_"))
        let server = try await ServerProcess.start(dataDir: directory)
        #expect(!server.output.text.contains("first admin key"), "a key exists: no first key is made")
        let client = server.client()
        #expect(try await client.json(.get, "/v1/polls", headers: [.authorization: "Bearer \(key)"]).status == .ok)
        #expect(
            try await client.json(.get, "/v1/polls", headers: [.authorization: "Bearer pw_x"]).status == .unauthorized)
        try await client.shutdown()
        server.terminate()
        _ = try await server.waitForExit(timeout: .seconds(10))
        let database = try Data(contentsOf: directory.appendingPathComponent("pollwire.sqlite"))
        #expect(database.range(of: Data(key.utf8)) == nil, "the key itself must not be stored")
    }

    /// `pollwire demo` makes its poll and votes on it: results move without anyone voting.
    @Test func demoVotesByItself() async throws {
        let directory = temporaryDirectory("demo")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess.start(dataDir: directory, command: "demo", arguments: ["--rate", "200"])
        let client = server.client()
        var totals: [Int] = []
        for _ in 0..<50 where (totals.last ?? 0) < 20 {
            let response = try await client.json(.get, "/v1/polls/demo/results")
            if response.status == .ok { totals.append(try response.object()["total"] as? Int ?? 0) }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect((totals.last ?? 0) >= 20, "totals seen: \(totals)")
        #expect(server.output.text.contains("/v1/polls/demo/live"))
        try await client.shutdown()
        server.terminate()
        #expect(try await server.waitForExit(timeout: .seconds(10)) == 0)
    }
}
