import Foundation
import HTTPTypes
import HummingbirdTesting
import PollwireCore
import Synchronization
import Testing

/// Votes flow at a steady rate while the server is killed with SIGKILL at random moments and
/// restarted. Afterwards: every acknowledged vote is stored, no ballot is stored twice, the
/// tallies equal a recount of the ballots, and the 1 s timeline equals a recount of the ballots
/// by second and, for every window that had ended when it was served between crashes, what was
/// served then.
@Suite(.serialized) struct CrashSafetyTests {
    static let poll = """
        {"title": "Crash", "questions": [
          {"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}, {"id": "c", "label": "C"}]},
          {"id": "q2", "kind": "multiple", "prompt": "?", "maxSelections": 2,
           "options": [{"id": "x", "label": "X"}, {"id": "y", "label": "Y"}, {"id": "z", "label": "Z"}]}]}
        """

    /// The ballot voter `n` sends: fixed per voter, so a retry is the identical ballot.
    static func ballot(_ n: Int) -> String {
        let single = ["a", "b", "c"][n % 3]
        let multiple = [["x"], ["y", "z"], ["x", "z"]][(n / 3) % 3].map { "\"\($0)\"" }.joined(separator: ",")
        return #"{"voter": "\#(n)", "answers": {"q1": ["\#(single)"], "q2": [\#(multiple)]}}"#
    }

    /// What the clients know: acknowledged voters, and voters whose answer was lost in a crash.
    final class Ledger: Sendable {
        let acknowledged = Mutex<Set<Int>>([])
        let unknown = Mutex<Set<Int>>([])
        let next = Atomic<Int>(0)
        let retried = Atomic<Int>(0)
    }

    @Test func everyAcknowledgedVoteSurvivesSIGKILL() async throws {
        let cycles = Int(ProcessInfo.processInfo.environment["PWTEST_CRASH_CYCLES"] ?? "") ?? 20
        let directory = temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ServerProcess.runTool(["keys", "create", "--data-dir", directory.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var server = try await ServerProcess.start(dataDir: directory)
        let admin = server.client()
        let created = try await admin.json(.post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(key)"])
        #expect(created.status == .created)
        let pollID = try created.object()["id"] as! String
        try await admin.shutdown()

        let ledger = Ledger()
        let began = Int64(Date().timeIntervalSince1970) - 1
        // Windows served between crashes that had ended 2 s before (no commit stamps them any more).
        var served: [Int64: [String: Int64]] = [:]
        var kills = 0
        for cycle in 0..<cycles {
            // Votes whose answer the last crash swallowed are retried with the same
            // Idempotency-Key: stored once either way.
            try await self.retryUnknown(ledger, server: server, pollID: pollID)
            let killAfter = Duration.milliseconds(Int.random(in: 150...600))
            let running = server
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 {
                    group.addTask { await self.vote(ledger, server: running, pollID: pollID) }
                }
                try await Task.sleep(for: killAfter)
                running.kill()
                kills += 1
                try await group.waitForAll()
            }
            server = try await ServerProcess.start(dataDir: directory)
            if cycle % 2 == 1 {
                let client = server.client()
                let (windows, now) = try await Self.timeline(client, pollID: pollID, from: began)
                try await client.shutdown()
                for (second, counts) in windows where second < now - 2 { served[second] = counts }
            }
        }
        try await self.retryUnknown(ledger, server: server, pollID: pollID)
        #expect(ledger.unknown.withLock { $0.isEmpty })

        let reader = server.client()
        let results = try await reader.json(.get, "/v1/polls/\(pollID)/results").object()
        let (timeline, _) = try await Self.timeline(reader, pollID: pollID, from: began)
        try await reader.shutdown()
        server.terminate()
        #expect(try await server.waitForExit(timeout: .seconds(10)) == 0)

        let acknowledged = ledger.acknowledged.withLock { $0 }
        print(
            "crash test: \(kills) SIGKILLs, \(acknowledged.count) acknowledged votes, \(ledger.retried.load(ordering: .relaxed)) retried after a crash"
        )
        let stored = try StoredState(dataDir: directory, pollID: pollID)
        #expect(kills == cycles)
        #expect(acknowledged.count > cycles * 20, "too few votes flowed to prove anything: \(acknowledged.count)")
        for voter in acknowledged {
            let expected = try JSONSerialization.jsonObject(with: Data(Self.ballot(voter).utf8)) as! [String: Any]
            let answers = try #require(stored.answers["v:\(voter)"], "acknowledged vote of \(voter) was lost")
            let storedAnswers = try JSONSerialization.jsonObject(with: Data(answers.utf8)) as! [String: [String]]
            #expect(storedAnswers == expected["answers"] as? [String: [String]])
        }
        #expect(stored.rowsPerVoter.values.allSatisfy { $0 == 1 }, "a ballot was stored twice")
        #expect(stored.tallies == stored.recount)
        // The ballot chain survived every SIGKILL whole: `pollwire verify` recomputes it.
        let verified = try ServerProcess.runTool(["verify", "--data-dir", directory.path])
        #expect(verified.contains("verified 1 poll(s)"), "\(verified)")
        #expect(stored.tallies.ballots == Int64(stored.answers.count))
        #expect(results["total"] as? Int == stored.answers.count)
        // Every stored ballot is in exactly one window, as served: rebuilt from the ballot rows
        // after 20 SIGKILLs, the windows are what the server serves, and what it served before.
        #expect(timeline.filter { !$0.value.isEmpty } == stored.secondsRecount)
        // Windows end 2 s after they are served at the earliest: the default 20 cycles take ~10 s.
        if cycles >= 10 { #expect(!served.isEmpty) }
        for (second, counts) in served {
            #expect(timeline[second] ?? [:] == counts, "second \(second) changed after it was served")
        }
    }

    /// The poll's 1 s windows from `from` to now (second -> "question/key" -> count, ballots as
    /// "/#", empty windows left out) and the server's now, in seconds.
    static func timeline(
        _ client: TestClient, pollID: String, from: Int64
    ) async throws -> ([Int64: [String: Int64]], Int64) {
        let response = try await client.json(.get, "/v1/polls/\(pollID)/timeline?window=1s&from=\(from)")
        #expect(response.status == .ok, "\(response.text)")
        let object = try response.object()
        let formatter = ISO8601DateFormatter()
        var windows: [Int64: [String: Int64]] = [:]
        for window in object["windows"] as! [[String: Any]] {
            let ballots = window["ballots"] as! Int
            guard ballots > 0 else { continue }
            let second = Int64(formatter.date(from: window["start"] as! String)!.timeIntervalSince1970)
            var counts: [String: Int64] = ["/#": Int64(ballots)]
            for (question, keys) in window["counts"] as! [String: [String: Int]] {
                for (key, count) in keys { counts["\(question)/\(key)"] = Int64(count) }
            }
            windows[second] = counts
        }
        let now = Int64(formatter.date(from: object["now"] as! String)!.timeIntervalSince1970)
        return (windows, now)
    }

    /// One client voting every 2 ms (a steady rate) until the server goes away.
    func vote(_ ledger: Ledger, server: ServerProcess, pollID: String) async {
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        for _ in 0..<10_000 {
            let voter = ledger.next.add(1, ordering: .relaxed).newValue
            do {
                let response = try await client.json(
                    .post, "/v1/polls/\(pollID)/votes", Self.ballot(voter),
                    headers: [HTTPField.Name("Idempotency-Key")!: "k\(voter)"])
                if response.status == .created {
                    _ = ledger.acknowledged.withLock { $0.insert(voter) }
                } else {
                    Issue.record("vote \(voter) answered \(response.status): \(response.text)")
                }
            } catch {
                _ = ledger.unknown.withLock { $0.insert(voter) }
                return
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    func retryUnknown(_ ledger: Ledger, server: ServerProcess, pollID: String) async throws {
        let unknown = ledger.unknown.withLock { $0 }
        guard !unknown.isEmpty else { return }
        let client = server.client()
        for voter in unknown {
            ledger.retried.add(1, ordering: .relaxed)
            let response = try await client.json(
                .post, "/v1/polls/\(pollID)/votes", Self.ballot(voter),
                headers: [HTTPField.Name("Idempotency-Key")!: "k\(voter)"])
            #expect(response.status == .created, "retry of \(voter): \(response.text)")
            if response.status == .created {
                _ = ledger.unknown.withLock { $0.remove(voter) }
                _ = ledger.acknowledged.withLock { $0.insert(voter) }
            }
        }
        try await client.shutdown()
    }
}
