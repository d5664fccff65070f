import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Owners and keys through the built binary, its command line and real sockets, on both stores:
/// the SQLite file and a real PostgreSQL with two nodes (a revoke on one holds on the other at once).
@Suite(.serialized) struct OwnerBoundaryTests {
    enum Kind: String, CaseIterable, Sendable {
        case sqlite, postgres
    }

    @Test(arguments: Kind.allCases) func ownersAreWalledOffAndRevokesHoldEverywhere(_ kind: Kind) async throws {
        let directory = temporaryDirectory("owners")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let postgres = kind == .postgres ? try ThrowawayPostgres.start() : nil
        defer { postgres?.destroy() }
        let store = postgres.map { ["--store", $0.url] } ?? ["--data-dir", directory.appendingPathComponent("a").path]
        func tool(_ arguments: [String]) throws -> String {
            try ServerProcess.runTool(arguments + store).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        #expect(try tool(["owners", "create", "acme", "--name", "Acme"]) == "acme")
        let acme = try tool(["keys", "create", "--owner", "acme", "--scope", "read,write,export", "--name", "app"])
        let other = try tool(["keys", "create", "--name", "default owner"])
        let listed = try tool(["keys", "list", "--owner", "acme"]).split(separator: "\n")
        #expect(listed.count == 2, "\(listed)")
        let acmeID = String(try #require(listed.last?.split(separator: "\t").first))
        #expect(listed.last?.contains("read,write,export") == true)

        let arguments = postgres.map { ["--store", $0.url] } ?? []
        var first = try await ServerProcess.start(dataDir: directory.appendingPathComponent("a"), arguments: arguments)
        let second =
            kind == .postgres
            ? try await ServerProcess.start(dataDir: directory.appendingPathComponent("b"), arguments: arguments) : nil
        defer {
            first.kill()
            second?.kill()
        }
        let a = first.client()
        let b = (second ?? first).client()
        defer {
            Task {
                try? await a.shutdown()
                try? await b.shutdown()
            }
        }
        func bearer(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }

        let made = try await a.json(
            .post, "/v1/polls",
            #"{"title": "Acme", "status": "draft", "questions": [{"id": "q", "kind": "nps", "prompt": "?"}]}"#,
            headers: bearer(acme))
        #expect(made.status == .created, "\(made.text)")
        let poll = try #require(try made.object()["id"] as? String)

        // The other owner's key, on the other node: nothing of Acme's exists.
        for (method, uri, body) in [
            (HTTPRequest.Method.get, "/v1/polls/\(poll)", nil), (.patch, "/v1/polls/\(poll)", #"{"title": "x"}"#),
            (.post, "/v1/polls/\(poll)/open", nil), (.post, "/v1/polls/\(poll)/close", nil),
            (.post, "/v1/polls/\(poll)/reveal", nil), (.get, "/v1/polls/\(poll)/export", nil),
            (.delete, "/v1/polls/\(poll)", nil),
        ] {
            let answer = try await b.json(method, uri, body, headers: bearer(other))
            #expect(answer.status == .notFound, "\(kind) \(method) \(uri): \(answer.status) \(answer.text)")
        }
        let list = try await b.json(.get, "/v1/polls", headers: bearer(other))
        #expect(!list.text.contains(poll))
        let batch = try await b.json(
            .post, "/v1/votes:batch", #"{"ballots": [{"poll": "\#(poll)", "voter": "x", "answers": {"q": 1}}]}"#,
            headers: bearer(other))
        #expect(batch.text.contains("\"status\":404"), "\(batch.text)")
        // Acme's key reads its draft on the other node, and may not manage keys.
        #expect(try await b.json(.get, "/v1/polls/\(poll)", headers: bearer(acme)).status == .ok)
        #expect(try await b.json(.get, "/v1/keys", headers: bearer(acme)).status == .forbidden)

        // Voter-token keys are the owner's too: registered on one node, listed on the other, and
        // another owner's key cannot remove them.
        let registered = try await a.json(
            .post, "/v1/voter-keys", #"{"algorithm": "HS256", "secret": "a site secret of at least 32 bytes!"}"#,
            headers: bearer(other))
        #expect(registered.status == .created, "\(registered.text)")
        let voterKey = try #require(try registered.object()["id"] as? String)
        #expect(try await b.json(.get, "/v1/voter-keys", headers: bearer(other)).text.contains(voterKey))
        #expect(!(try await b.json(.get, "/v1/voter-keys", headers: bearer(acme)).text.contains(voterKey)))
        #expect(try await b.json(.delete, "/v1/voter-keys/\(voterKey)", headers: bearer(other)).status == .noContent)
        #expect(try await b.json(.delete, "/v1/voter-keys/\(voterKey)", headers: bearer(other)).status == .notFound)

        // Revoked on the command line: refused on both nodes from the next request.
        _ = try tool(["keys", "revoke", acmeID])
        #expect(try await a.json(.get, "/v1/polls", headers: bearer(acme)).status == .unauthorized)
        #expect(try await b.json(.get, "/v1/polls", headers: bearer(acme)).status == .unauthorized)
        #expect(try await b.json(.get, "/v1/polls", headers: bearer(other)).status == .ok)

        // The audit log is in the store: it outlives a SIGKILL like the change it records.
        first.kill()
        let audit = try tool(["audit", "--owner", "acme"]).split(separator: "\n").map { String($0) }
        #expect(audit.contains { $0.contains("\"action\":\"poll.create\"") && $0.contains(acmeID) }, "\(audit)")
        #expect(audit.contains { $0.contains("\"action\":\"key.revoke\"") && $0.contains("\"key\":\"cli\"") })
        #expect(audit.first?.contains("\"action\":\"owner.create\"") == true)
        // The poll is still there after the kill, and still Acme's.
        first = try await ServerProcess.start(dataDir: directory.appendingPathComponent("a"), arguments: arguments)
        let c = first.client()
        defer { Task { try? await c.shutdown() } }
        #expect(try await c.json(.get, "/v1/polls/\(poll)/export", headers: bearer(other)).status == .notFound)
        #expect(try await c.json(.get, "/v1/polls/\(poll)").status == .notFound)
    }
}
