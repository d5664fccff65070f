import Foundation
import HTTPTypes
import HummingbirdTesting
import PollwireCore
import Synchronization
import Testing

/// Votes flow at a steady rate while the server is killed with SIGKILL at random moments and
/// restarted. Afterwards: every acknowledged vote is stored, no ballot is stored twice, the
/// tallies equal a recount of the ballots, and the 1 s timeline equals a recount of the ballots
/// by second and, for every window that was final when it was served between crashes, what was
/// served then. Besides the single votes, a batch client sends ballots with their own `castAt`
/// up to 3.5 s old against a lateness of 2 s: some land in earlier windows, some in `late`.
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
        /// The castAt each batch voter was sent with (kept for a retry: the identical ballot).
        let castAt = Mutex<[Int: String]>([:])
    }

    /// Allowed lateness of the servers under test, seconds: windows are final 2 s after they end.
    static let arguments = ["--analytics-allowed-lateness-seconds", "2"]

    @Test func everyAcknowledgedVoteSurvivesSIGKILL() async throws {
        let cycles = Int(ProcessInfo.processInfo.environment["PWTEST_CRASH_CYCLES"] ?? "") ?? 20
        let directory = temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ServerProcess.runTool(["keys", "create", "--data-dir", directory.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var server = try await ServerProcess.start(dataDir: directory, arguments: Self.arguments)
        let admin = server.client()
        let created = try await admin.json(.post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(key)"])
        #expect(created.status == .created)
        let pollID = try created.object()["id"] as! String
        try await admin.shutdown()

        let ledger = Ledger()
        // castAt reaches 3.5 s before the first vote.
        let began = Int64(Date().timeIntervalSince1970) - 5
        // Windows served between crashes that had ended 2 s before (no commit stamps them any more).
        var served: [Int64: [String: Int64]] = [:]
        var kills = 0
        for cycle in 0..<cycles {
            // Votes whose answer the last crash swallowed are retried with the same
            // Idempotency-Key: stored once either way.
            try await self.retryUnknown(ledger, server: server, pollID: pollID, key: key)
            let killAfter = Duration.milliseconds(Int.random(in: 150...600))
            let running = server
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<5 {
                    group.addTask { await self.vote(ledger, server: running, pollID: pollID) }
                }
                group.addTask { await self.batch(ledger, server: running, pollID: pollID, key: key) }
                try await Task.sleep(for: killAfter)
                running.kill()
                kills += 1
                try await group.waitForAll()
            }
            server = try await ServerProcess.start(dataDir: directory, arguments: Self.arguments)
            if cycle % 2 == 1 {
                let client = server.client()
                let (windows, final) = try await Self.timeline(client, pollID: pollID, from: began)
                try await client.shutdown()
                for (second, counts) in windows where final.contains(second) { served[second] = counts }
            }
        }
        try await self.retryUnknown(ledger, server: server, pollID: pollID, key: key)
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
        let verified = try ServerProcess.runTool(["verify", "--data-dir", directory.path] + Self.arguments)
        #expect(verified.contains("verified 1 poll(s)"), "\(verified)")
        #expect(stored.tallies.ballots == Int64(stored.answers.count))
        #expect(results["total"] as? Int == stored.answers.count)
        // Every stored ballot is in exactly one window, as served: rebuilt from the ballot rows
        // after 20 SIGKILLs, the windows are what the server serves, and what it served before.
        #expect(timeline.filter { !$0.value.isEmpty } == stored.secondsRecount)
        // Windows are final 2 s after they end: the default 20 cycles take ~10 s.
        if cycles >= 10 { #expect(!served.isEmpty) }
        // The batch ballots reached both their own earlier windows and the late total.
        #expect(stored.castAts > 0 && stored.lateBallots > 0, "\(stored.castAts) castAt, \(stored.lateBallots) late")
        for (second, counts) in served {
            #expect(timeline[second] ?? [:] == counts, "second \(second) changed after it was served")
        }
    }

    /// The poll's 1 s windows from `from` to now (second -> "question/key" -> count, ballots as
    /// "/#", late ones as "/late", empty windows left out) and the seconds of the final ones.
    static func timeline(
        _ client: TestClient, pollID: String, from: Int64
    ) async throws -> ([Int64: [String: Int64]], Set<Int64>) {
        let response = try await client.json(.get, "/v1/polls/\(pollID)/timeline?window=1s&from=\(from)")
        #expect(response.status == .ok, "\(response.text)")
        let object = try response.object()
        let formatter = ISO8601DateFormatter()
        var windows: [Int64: [String: Int64]] = [:]
        var final: Set<Int64> = []
        for window in object["windows"] as! [[String: Any]] {
            let second = Int64(formatter.date(from: window["start"] as! String)!.timeIntervalSince1970)
            if window["final"] as! Bool { final.insert(second) }
            let ballots = window["ballots"] as! Int
            let late = window["late"] as? Int ?? 0
            guard ballots > 0 || late > 0 else { continue }
            var counts: [String: Int64] = ballots > 0 ? ["/#": Int64(ballots)] : [:]
            if late > 0 { counts["/late"] = Int64(late) }
            for (question, keys) in window["counts"] as! [String: [String: Int]] {
                for (key, count) in keys { counts["\(question)/\(key)"] = Int64(count) }
            }
            windows[second] = counts
        }
        return (windows, final)
    }

    /// The batch voter `n`'s ballot, cast `age` seconds before now (or at the castAt it was sent
    /// with before).
    static func batchBallot(_ n: Int, pollID: String, castAt: String) -> String {
        let ballot = Self.ballot(n).dropFirst().dropLast()
        return #"{"poll": "\#(pollID)", "idempotencyKey": "k\#(n)", "castAt": "\#(castAt)", \#(ballot)}"#
    }

    /// One client sending 4-ballot batches with castAt 0 to 3.5 s old every 10 ms until the
    /// server goes away. A batch whose answer is lost is retried ballot by ballot, unchanged.
    func batch(_ ledger: Ledger, server: ServerProcess, pollID: String, key: String) async {
        let client = server.client()
        defer { Task { try? await client.shutdown() } }
        let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        for _ in 0..<2_000 {
            var voters: [Int] = []
            var ballots: [String] = []
            for _ in 0..<4 {
                let voter = ledger.next.add(1, ordering: .relaxed).newValue
                let castAt = Date().addingTimeInterval(-Double.random(in: 0...3.5)).formatted(format)
                ledger.castAt.withLock { $0[voter] = castAt }
                voters.append(voter)
                ballots.append(Self.batchBallot(voter, pollID: pollID, castAt: castAt))
            }
            do {
                let response = try await client.json(
                    .post, "/v1/votes:batch", #"{"ballots": [\#(ballots.joined(separator: ","))]}"#,
                    headers: [.authorization: "Bearer \(key)"])
                let results = try response.object()["results"] as? [[String: Any]] ?? []
                for (voter, result) in zip(voters, results) {
                    if result["status"] as? Int == 201 {
                        _ = ledger.acknowledged.withLock { $0.insert(voter) }
                    } else {
                        Issue.record("batch ballot \(voter) answered \(result)")
                    }
                }
                if results.count != voters.count { Issue.record("batch answered \(response.status)") }
            } catch {
                ledger.unknown.withLock { $0.formUnion(voters) }
                return
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
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

    func retryUnknown(_ ledger: Ledger, server: ServerProcess, pollID: String, key: String) async throws {
        let unknown = ledger.unknown.withLock { $0 }
        guard !unknown.isEmpty else { return }
        let client = server.client()
        for voter in unknown {
            ledger.retried.add(1, ordering: .relaxed)
            var status: HTTPResponse.Status
            var text: String
            if let castAt = ledger.castAt.withLock({ $0[voter] }) {
                let response = try await client.json(
                    .post, "/v1/votes:batch",
                    #"{"ballots": [\#(Self.batchBallot(voter, pollID: pollID, castAt: castAt))]}"#,
                    headers: [.authorization: "Bearer \(key)"])
                let result = (try response.object()["results"] as? [[String: Any]])?.first
                status = HTTPResponse.Status(code: result?["status"] as? Int ?? 0)
                text = response.text
            } else {
                let response = try await client.json(
                    .post, "/v1/polls/\(pollID)/votes", Self.ballot(voter),
                    headers: [HTTPField.Name("Idempotency-Key")!: "k\(voter)"])
                (status, text) = (response.status, response.text)
            }
            #expect(status == .created, "retry of \(voter): \(text)")
            if status == .created {
                _ = ledger.unknown.withLock { $0.remove(voter) }
                _ = ledger.acknowledged.withLock { $0.insert(voter) }
            }
        }
        try await client.shutdown()
    }
}
