import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// Cluster mode for real: a PostgreSQL started by the test, three `pollwire` processes on it
/// and HAProxy (deploy/haproxy.cfg) in front. Votes go through HAProxy; viewers watch each
/// node directly; PostgreSQL is what the end state is checked against.
@Suite(.serialized) struct ClusterTests {
    static let poll = """
        {"title": "Cluster", "settings": {"allowChange": true}, "questions": [
          {"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}, {"id": "c", "label": "C"}]},
          {"id": "q2", "kind": "multiple", "prompt": "?", "maxSelections": 2,
           "options": [{"id": "x", "label": "X"}, {"id": "y", "label": "Y"}, {"id": "z", "label": "Z"}]}]}
        """

    /// Voter `n`'s ballot; `changed` is the ballot they switch to.
    static func ballot(_ n: Int, changed: Bool = false) -> String {
        let single = ["a", "b", "c"][(n + (changed ? 1 : 0)) % 3]
        let multiple = [["x"], ["y", "z"], ["x", "z"]][(n / 3) % 3].map { "\"\($0)\"" }.joined(separator: ",")
        return #"{"voter": "v\#(n)", "answers": {"q1": ["\#(single)"], "q2": [\#(multiple)]}}"#
    }

    /// What the clients know: the ballot each acknowledged voter was last acknowledged for, and
    /// the voters whose last answer they never got (a killed node, a 502, a 503).
    final class Ledger: Sendable {
        let acknowledged = Mutex<[Int: String]>([:])
        let unknown = Mutex<[Int: String]>([:])
        let next = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
    }

    // MARK: Convergence

    @Test func votesThroughHAProxyReachViewersOnEveryNode() async throws {
        let cluster = try await TestCluster.start()
        // A failed expectation that throws must not leave the nodes, HAProxy and PostgreSQL running.
        do {
            let pollID = try await cluster.createPoll(Self.poll)
            let viewers = try cluster.nodes.map { try SSEViewer(port: $0.port, pollID: pollID) }
            defer { for viewer in viewers { viewer.stop() } }

            // 8 clients through HAProxy, 1,200 voters; every 5th voter then changes their ballot
            // and sends the changed one twice (the second is a duplicate).
            let ledger = Ledger()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await self.voteThroughProxy(cluster, pollID: pollID, ledger: ledger, until: 1200)
                    }
                }
                try await group.waitForAll()
            }
            #expect(ledger.unknown.withLock { $0.isEmpty }, "no node failed here: every vote must be answered")

            let stored = try cluster.stored(pollID)
            #expect(stored.answers.count == 1200)
            #expect(stored.tallies == stored.recount)
            #expect(stored.ballots == 1200 + 240, "1,200 first ballots and 240 changes")
            for viewer in viewers {
                #expect(
                    try await viewer.wait(for: stored.version, timeout: .seconds(5)),
                    "a viewer never saw the last version")
                #expect(viewer.latest?["version"] as? Int == Int(stored.version))
                #expect(viewer.latest?["total"] as? Int == 1200)
            }
            for node in cluster.nodes {
                let reader = node.client()
                let results = try await reader.json(.get, "/v1/polls/\(pollID)/results").object()
                try await reader.shutdown()
                #expect(results["version"] as? Int == Int(stored.version))
                #expect(
                    Self.counts(results) == Self.counts(stored.tallies),
                    "node \(node.port) counts differ from PostgreSQL")
            }

            // Propagation: a vote acknowledged by node 1 until node 2's viewer sees its version.
            let node1 = cluster.nodes[0].client()
            var latencies: [Duration] = []
            for n in 0..<100 {
                let response = try await node1.json(.post, "/v1/polls/\(pollID)/votes", Self.ballot(10_000 + n))
                let acknowledged = ContinuousClock.now
                let version = try #require(try response.object()["version"] as? Int)
                #expect(try await viewers[1].wait(for: Int64(version), timeout: .seconds(5)))
                let seen = try #require(viewers[1].firstSeen(atLeast: Int64(version)))
                latencies.append(max(.zero, seen - acknowledged))
                try await Task.sleep(for: .milliseconds(10))
            }
            try await node1.shutdown()
            latencies.sort()
            print(
                "cluster propagation (ack on node 1 -> SSE on node 2, 100 votes): p50 \(latencies[50]), p99 \(latencies[98]), max \(latencies[99])"
            )
            #expect(latencies[98] < .seconds(1), "a vote took \(latencies[98]) to reach another node's viewer")
            try await self.stateChangesReachEveryNode(cluster)
            try await self.aPollMadeOnOneNodeIsFoundOnTheOthersAtOnce(cluster)
            try await self.oneAddressGetsTheClusterVoteLimitNotOnePerNode(cluster)
            try await self.oneVoterGetsTheClusterVoterLimitNotOnePerNode(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Through HAProxy (deploy/haproxy.cfg) one client address gets the cluster's vote limit, not
    /// each node's: 800 votes from 127.0.0.2 on one keep-alive connection, round robin over three
    /// nodes, are 500 accepted (the burst of `"votes-ip";q=500;w=10`) and the rest refused with the
    /// API's 429, where the three nodes' own limits would each take 500. (127.0.0.1, the other tests'
    /// address, skips the limit as the nodes' allow list does.)
    func oneAddressGetsTheClusterVoteLimitNotOnePerNode(_ cluster: TestCluster) async throws {
        let pollID = try await cluster.createPoll(
            """
            {"title": "Limit", "settings": {"dedupe": "none"}, "questions": [
              {"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]}
            """)
        let url = "http://127.0.0.1:\(cluster.proxy.port)/v1/polls/\(pollID)/votes"
        let vote = ["--interface", "127.0.0.2", "-X", "POST", "-H", "Content-Type: application/json"]
        // `--next` between votes: curl sends `-d` with the first URL of a group only.
        let one =
            ["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}\\n"] + vote + [
                "-d", #"{"answers": {"q1": ["a"]}}"#, url,
            ]
        let sent = try run(
            "/usr/bin/curl", Array(Array(repeating: one, count: 800).joined(separator: ["--next"])))
        let codes = sent.output.split(separator: "\n").map(String.init)
        #expect(codes.count == 800)
        let accepted = codes.filter { $0 == "201" }.count
        #expect(codes.allSatisfy { $0 == "201" || $0 == "429" }, "\(Set(codes))")
        #expect((490...560).contains(accepted), "accepted \(accepted) of 800 from one address")
        let refusal = try run(
            "/usr/bin/curl", ["-s", "-i", "--max-time", "5"] + vote + ["-d", #"{"answers": {"q1": ["a"]}}"#, url])
        #expect(refusal.output.hasPrefix("HTTP/1.1 429"))
        #expect(refusal.output.lowercased().contains("retry-after: 10"))
        #expect(refusal.output.contains(#"{"error":{"code":"rate_limited""#))
        var counted = false
        for _ in 0..<100 where !counted {
            let results = try await cluster.nodes[0].client().json(.get, "/v1/polls/\(pollID)/results")
            counted = (results.body.map { String(buffer: $0) } ?? "").contains("\"total\":\(accepted),")
            if !counted { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(counted, "every accepted vote is counted")
    }

    /// Through HAProxy one voter gets the cluster's per-voter limit, not each node's: 12 attempts by
    /// one voter on one poll, round robin over three nodes (at most 4 reach any node, under each
    /// node's own limit of 5), are 5 answered and 7 refused with the API's 429; another voter still
    /// passes, and a device header counts as the voter when the body names none.
    func oneVoterGetsTheClusterVoterLimitNotOnePerNode(_ cluster: TestCluster) async throws {
        let pollID = try await cluster.createPoll(
            """
            {"title": "Voter limit", "settings": {"dedupe": "voter"}, "questions": [
              {"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]}
            """)
        let url = "http://127.0.0.1:\(cluster.proxy.port)/v1/polls/\(pollID)/votes"
        func attempts(_ body: String, count: Int, headers: [String] = []) throws -> [String] {
            let one =
                ["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}\\n", "-X", "POST"]
                + ["-H", "Content-Type: application/json"] + headers + ["-d", body, url]
            let sent = try run(
                "/usr/bin/curl", Array(Array(repeating: one, count: count).joined(separator: ["--next"])))
            return sent.output.split(separator: "\n").map(String.init)
        }
        let alice = try attempts(#"{"voter": "alice", "answers": {"q1": ["a"]}}"#, count: 12)
        #expect(alice.count == 12)
        #expect(alice.filter { $0 == "429" }.count == 7, "\(alice)")
        #expect(alice.first == "201", "\(alice)")
        let refusal = try run(
            "/usr/bin/curl",
            ["-s", "-i", "--max-time", "5", "-X", "POST", "-H", "Content-Type: application/json"]
                + ["-d", #"{"voter": "alice", "answers": {"q1": ["b"]}}"#, url])
        #expect(refusal.output.hasPrefix("HTTP/1.1 429"))
        #expect(refusal.output.lowercased().contains("retry-after: 5"))
        #expect(refusal.output.contains(#"{"error":{"code":"rate_limited""#))
        #expect(try attempts(#"{"voter": "bob", "answers": {"q1": ["a"]}}"#, count: 1) == ["201"])
        // A device header is the voter when the body names none: the sixth attempt is refused
        // at HAProxy whatever the nodes make of the token.
        let device = try attempts(
            #"{"answers": {"q1": ["a"]}}"#, count: 6, headers: ["-H", "Pollwire-Device: not-a-token"])
        #expect(device.count == 6 && device.last == "429" && !device.dropLast().contains("429"), "\(device)")
    }

    /// A client that creates a poll through one node and at once votes through the next and reads
    /// through the third (round robin does that) finds the poll, though its notification has not
    /// reached them yet: a node looks a poll it does not know up in PostgreSQL.
    func aPollMadeOnOneNodeIsFoundOnTheOthersAtOnce(_ cluster: TestCluster) async throws {
        let clients = cluster.nodes.map { $0.client() }
        for round in 0..<20 {
            let maker = clients[round % 3]
            let voter = clients[(round + 1) % 3]
            let reader = clients[(round + 2) % 3]
            let created = try await maker.json(
                .post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(cluster.key)"])
            let id = try #require(try created.object()["id"] as? String)
            let vote = try await voter.json(.post, "/v1/polls/\(id)/votes", Self.ballot(round))
            #expect(vote.status == .created, "round \(round): \(vote.text)")
            let results = try await reader.json(.get, "/v1/polls/\(id)/results")
            #expect(results.status == .ok, "round \(round): \(results.text)")
            // The vote may not have reached the reader yet; the poll has.
            #expect((try results.object()["total"] as? Int ?? 99) <= 1)
            let definition = try await reader.json(.get, "/v1/polls/\(id)")
            #expect(definition.status == .ok, "round \(round): \(definition.text)")
        }
        #expect(
            try await clients[0].json(.get, "/v1/polls/\(String(repeating: "Z", count: 16))/results").status
                == .notFound,
            "an unknown poll is still unknown")
        for client in clients { try await client.shutdown() }
    }

    /// An `after_close` poll that closes by itself shows its results to viewers on every node
    /// at its close; a viewer on another node that resumes from hidden results after a reveal
    /// gets the results.
    func stateChangesReachEveryNode(_ cluster: TestCluster) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let closesAt = Date().addingTimeInterval(3)
        let scheduled = try await cluster.createPoll(
            Self.poll.replacingOccurrences(
                of: #""settings": {"allowChange": true}"#,
                with: #""settings": {"visibility": "after_close"}, "closesAt": "\#(formatter.string(from: closesAt))""#)
        )
        let hidden = try await cluster.createPoll(
            Self.poll.replacingOccurrences(
                of: #""settings": {"allowChange": true}"#, with: #""settings": {"visibility": "hidden_until_reveal"}"#))
        let node1 = cluster.nodes[0].client()
        for poll in [scheduled, hidden] {
            let vote = try await node1.json(.post, "/v1/polls/\(poll)/votes", Self.ballot(1))
            #expect(vote.status == .created)
        }
        let watchers = try cluster.nodes.map { try SSEViewer(port: $0.port, pollID: scheduled) }
        defer { for watcher in watchers { watcher.stop() } }
        for watcher in watchers {
            #expect(try await watcher.waitForLatest(timeout: .seconds(5)) { $0["hidden"] as? Bool == true })
        }
        for (index, watcher) in watchers.enumerated() {
            #expect(
                try await watcher.waitForLatest(timeout: .seconds(8)) { $0["hidden"] as? Bool == false },
                "node \(index + 1)'s viewer never saw the results of the scheduled close")
        }
        #expect(
            Date().timeIntervalSince(closesAt) < 3, "the close took \(Date().timeIntervalSince(closesAt)) s to show")

        let before = try SSEViewer(port: cluster.nodes[1].port, pollID: hidden)
        #expect(try await before.waitForLatest(timeout: .seconds(5)) { $0["version"] as? Int == 1 })
        before.stop()
        let revealed = try await node1.json(
            .post, "/v1/polls/\(hidden)/reveal", headers: [.authorization: "Bearer \(cluster.key)"])
        #expect(revealed.status == .ok)
        try await node1.shutdown()
        let resumed = try SSEViewer(port: cluster.nodes[2].port, pollID: hidden, lastEventID: "1-h")
        defer { resumed.stop() }
        #expect(
            try await resumed.waitForLatest(timeout: .seconds(5)) { $0["hidden"] as? Bool == false },
            "a viewer resuming from hidden results on another node after a reveal got nothing")
    }

    // MARK: A node dies

    @Test func sigkillOfANodeLosesNoAcknowledgedVote() async throws {
        var cluster = try await TestCluster.start()
        // A failed expectation that throws must not leave the nodes, HAProxy and PostgreSQL running.
        do {
            let pollID = try await cluster.createPoll(Self.poll)
            let ledger = Ledger()
            let running = cluster
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        try await self.voteThroughProxy(running, pollID: pollID, ledger: ledger, until: 4000)
                    }
                }
                try await Task.sleep(for: .milliseconds(800))
                running.nodes[1].kill()
                try await group.waitForAll()
            }
            print(
                "cluster SIGKILL: \(ledger.acknowledged.withLock { $0.count }) acknowledged, \(ledger.unknown.withLock { $0.count }) unanswered"
            )
            try await self.retryUnknown(cluster, pollID: pollID, ledger: ledger)
            try self.checkNothingLost(cluster, pollID: pollID, ledger: ledger)

            // The survivors agree with PostgreSQL; a restarted node catches up from it.
            cluster.nodes[1] = try await TestCluster.startNode(
                1, postgres: cluster.postgres, directory: cluster.directory)
            try await self.nodesAgreeWithPostgreSQL(cluster, pollID: pollID)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    // MARK: PostgreSQL goes away

    @Test func postgresRestartLosesNothingAndNodesRecoverByThemselves() async throws {
        let cluster = try await TestCluster.start()
        // A failed expectation that throws must not leave the nodes, HAProxy and PostgreSQL running.
        do {
            let pollID = try await cluster.createPoll(Self.poll)
            let ledger = Ledger()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        try await self.voteThroughProxy(cluster, pollID: pollID, ledger: ledger, until: 3000)
                    }
                }
                try await Task.sleep(for: .milliseconds(600))
                try cluster.postgres.stopServer()
                try await self.checkDegraded(cluster.nodes[0], pollID: pollID)
                try cluster.postgres.startServer()
                // Every node gets ready again by itself.
                for node in cluster.nodes {
                    #expect(
                        try await self.waitForReady(node, timeout: .seconds(20)), "node \(node.port) did not recover")
                }
                try await group.waitForAll()
            }
            print(
                "cluster PostgreSQL restart: \(ledger.acknowledged.withLock { $0.count }) acknowledged, \(ledger.refused.load(ordering: .relaxed)) refused or unanswered"
            )
            #expect(
                ledger.refused.load(ordering: .relaxed) > 0, "PostgreSQL was down: some votes must have been refused")
            try await self.retryUnknown(cluster, pollID: pollID, ledger: ledger)
            try self.checkNothingLost(cluster, pollID: pollID, ledger: ledger)
            try await self.nodesAgreeWithPostgreSQL(cluster, pollID: pollID)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// While PostgreSQL is down: results from memory marked stale, /readyz not ready, and a
    /// vote refused with 503 + Retry-After within the commit deadline (2 s), not hanging.
    func checkDegraded(_ node: ServerProcess, pollID: String) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        var stale = try fetch(node.port, "/v1/polls/\(pollID)/results")
        while !stale.headers.contains("Pollwire-Stale: true"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            stale = try fetch(node.port, "/v1/polls/\(pollID)/results")
        }
        #expect(stale.headers.hasPrefix("HTTP/1.1 200"))
        #expect(stale.headers.contains("Pollwire-Stale: true"))
        #expect(stale.body.contains("\"stale\":true"))
        #expect(try fetch(node.port, "/readyz").headers.hasPrefix("HTTP/1.1 503"))

        let client = node.client()
        let started = ContinuousClock.now
        let response = try await client.json(.post, "/v1/polls/\(pollID)/votes", Self.ballot(99_999))
        let took = ContinuousClock.now - started
        try await client.shutdown()
        #expect(response.status == .serviceUnavailable, "\(response.text)")
        #expect(response.headers[.retryAfter] != nil)
        #expect(response.text.contains("store_unavailable"))
        #expect(took < .seconds(3), "a vote waited \(took) for a dead store")
    }

    // MARK: Helpers

    /// Votes through HAProxy until `until` voters were taken from the ledger. Every 5th voter
    /// changes their ballot afterwards and sends the change twice.
    func voteThroughProxy(_ cluster: TestCluster, pollID: String, ledger: Ledger, until: Int) async throws {
        var client = cluster.proxy.client()
        defer { Task { [client] in try? await client.shutdown() } }
        while true {
            let n = ledger.next.add(1, ordering: .relaxed).newValue - 1
            guard n < until else { return }
            var ballots = [Self.ballot(n)]
            if n % 5 == 0 { ballots += [Self.ballot(n, changed: true), Self.ballot(n, changed: true)] }
            for (index, ballot) in ballots.enumerated() {
                let key = "k\(n)-\(min(index, 1))"
                let status: HTTPResponse.Status?
                do {
                    status = try await client.json(
                        .post, "/v1/polls/\(pollID)/votes", ballot, headers: [.idempotencyKey: key]
                    ).status
                } catch {
                    status = nil
                    try? await client.shutdown()
                    client = cluster.proxy.client()
                }
                if status == .created || status == .ok {
                    ledger.acknowledged.withLock { $0[n] = ballot }
                    _ = ledger.unknown.withLock { $0.removeValue(forKey: n) }
                } else {
                    ledger.refused.add(1, ordering: .relaxed)
                    ledger.unknown.withLock { $0[n] = ballot }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
    }

    /// Sends every unanswered vote again (same Idempotency-Key) until it is acknowledged.
    func retryUnknown(_ cluster: TestCluster, pollID: String, ledger: Ledger) async throws {
        let client = cluster.proxy.client()
        for (n, ballot) in ledger.unknown.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            let key = "k\(n)-\(ballot == Self.ballot(n) ? 0 : 1)"
            var status: HTTPResponse.Status?
            for _ in 0..<20 {
                status = try? await client.json(
                    .post, "/v1/polls/\(pollID)/votes", ballot, headers: [.idempotencyKey: key]
                ).status
                if status == .created || status == .ok { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(status == .created || status == .ok, "retry of voter \(n) answered \(String(describing: status))")
            ledger.acknowledged.withLock { $0[n] = ballot }
        }
        try await client.shutdown()
    }

    /// Every acknowledged voter's latest acknowledged ballot is in PostgreSQL, and the tallies
    /// equal a recount of the stored ballots.
    func checkNothingLost(_ cluster: TestCluster, pollID: String, ledger: Ledger) throws {
        let stored = try cluster.stored(pollID)
        let acknowledged = ledger.acknowledged.withLock { $0 }
        #expect(acknowledged.count > 200, "too few votes flowed to prove anything: \(acknowledged.count)")
        var lost = 0
        for (n, ballot) in acknowledged {
            let expected = try JSONSerialization.jsonObject(with: Data(ballot.utf8)) as! [String: Any]
            guard let answers = stored.answers["v:v\(n)"] else {
                lost += 1
                continue
            }
            let storedAnswers = try JSONSerialization.jsonObject(with: Data(answers.utf8)) as? [String: [String]]
            #expect(storedAnswers == expected["answers"] as? [String: [String]], "voter \(n)")
        }
        #expect(lost == 0, "\(lost) acknowledged votes are not in PostgreSQL")
        #expect(stored.tallies == stored.recount)
    }

    func waitForReady(_ node: ServerProcess, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? fetch(node.port, "/readyz"))?.headers.hasPrefix("HTTP/1.1 200") == true { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Waits (at most 10 s) until a node's results show `version`, then compares its counts.
    /// Every node shows what PostgreSQL holds for the poll: its version and counts.
    func nodesAgreeWithPostgreSQL(_ cluster: TestCluster, pollID: String) async throws {
        let stored = try cluster.stored(pollID)
        for node in cluster.nodes {
            try await self.waitForResults(node, pollID: pollID, version: stored.version, tallies: stored.tallies)
        }
    }

    func waitForResults(_ node: ServerProcess, pollID: String, version: Int64, tallies: [String: Int64]) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var fetched = try fetch(node.port, "/v1/polls/\(pollID)/results")
        while fetched.version != Int(version), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            fetched = try fetch(node.port, "/v1/polls/\(pollID)/results")
        }
        #expect(fetched.version == Int(version), "node \(node.port) stayed at \(String(describing: fetched.version))")
        let results = try JSONSerialization.jsonObject(with: Data(fetched.body.utf8)) as? [String: Any] ?? [:]
        #expect(Self.counts(results) == Self.counts(tallies), "node \(node.port) counts differ from PostgreSQL")
        #expect(!fetched.headers.contains("Pollwire-Stale"))
    }

    /// Option counts of q1 and q2 from results JSON, as "q/option" -> count.
    static func counts(_ results: [String: Any]) -> [String: Int64] {
        var counts: [String: Int64] = [:]
        for question in results["questions"] as? [[String: Any]] ?? [] {
            for option in question["options"] as? [[String: Any]] ?? [] {
                let count = option["count"] as? Int ?? 0
                if count != 0 { counts["\(question["id"]!)/\(option["id"]!)"] = Int64(count) }
            }
        }
        return counts
    }

    /// The same, from the tallies table (only option counters).
    static func counts(_ tallies: [String: Int64]) -> [String: Int64] {
        tallies.filter { key, _ in ["q1/a", "q1/b", "q1/c", "q2/x", "q2/y", "q2/z"].contains(key) }
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
