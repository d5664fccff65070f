import Foundation
import GRDB
import HTTPTypes
import HummingbirdTesting
import NIOCore
import PollwireEngine
import PollwireHTTP
import PollwireSQLite
import Testing

/// Owners, scoped keys, revocation and the audit log, over real sockets on the real SQLite file.
/// (The same boundaries against PostgreSQL and the built binary: PollwireSystemTests/OwnerBoundaryTests.)
@Suite struct OwnersAndKeysTests {
    /// A request with `key` (nil: none).
    func call(
        _ server: TestServer, _ method: HTTPRequest.Method, _ uri: String, key: String?, json: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var fields = headers
        if let key { fields[.authorization] = "Bearer \(key)" }
        return try await server.request(method, uri, json: json, headers: fields)
    }

    /// Makes owner `owner` (with the server's operator key) and a key of it with `scopes`.
    func key(
        _ server: TestServer, owner: String, scopes: [String], expiresAt: String? = nil, makeOwner: Bool = true
    ) async throws -> (secret: String, id: String) {
        if makeOwner {
            let made = try await self.call(
                server, .post, "/v1/owners", key: server.key, json: #"{"id": "\#(owner)", "name": "\#(owner) Inc"}"#)
            #expect(made.status == .created, "\(made.text)")
        }
        let scopeList = scopes.map { "\"\($0)\"" }.joined(separator: ",")
        let expiry = expiresAt.map { #", "expiresAt": "\#($0)""# } ?? ""
        let created = try await self.call(
            server, .post, "/v1/keys", key: server.key,
            json: #"{"owner": "\#(owner)", "name": "k", "scopes": [\#(scopeList)]\#(expiry)}"#)
        #expect(created.status == .created, "\(created.text)")
        let object = try created.object()
        #expect(object["owner"] as? String == owner)
        return (try #require(object["secret"] as? String), try #require(object["id"] as? String))
    }

    @Test func anotherOwnersPollDoesNotExistOnAnyManagementRoute() async throws {
        try await TestServer.run { server in
            let acme = try await self.key(server, owner: "acme", scopes: ["read", "write", "export", "admin"])
            let globex = try await self.key(server, owner: "globex", scopes: ["read", "write", "export", "admin"])
            let made = try await self.call(
                server, .post, "/v1/polls", key: acme.secret,
                json:
                    #"{"title": "Acme only", "status": "draft", "questions": [{"id": "q", "kind": "nps", "prompt": "?"}]}"#
            )
            #expect(made.status == .created)
            let poll = try made.object()["id"] as! String

            // Globex: every route answers as for a poll that does not exist.
            let attempts: [(HTTPRequest.Method, String, String?)] = [
                (.get, "/v1/polls/\(poll)", nil),
                (.patch, "/v1/polls/\(poll)", #"{"title": "Mine now"}"#),
                (.post, "/v1/polls/\(poll)/open", nil),
                (.post, "/v1/polls/\(poll)/close", nil),
                (.post, "/v1/polls/\(poll)/reveal", nil),
                (.get, "/v1/polls/\(poll)/export?format=ndjson", nil),
                (.delete, "/v1/polls/\(poll)", nil),
            ]
            for (method, uri, json) in attempts {
                let answer = try await self.call(server, method, uri, key: globex.secret, json: json)
                #expect(answer.status == .notFound, "\(method) \(uri): \(answer.status)")
                #expect(answer.errorCode == "not_found")
            }
            let listed = try await self.call(server, .get, "/v1/polls", key: globex.secret)
            #expect((try listed.object()["polls"] as? [Any])?.isEmpty == true)
            // Open it (as Acme) so that a batch could count; Globex's batch ballot is still 404.
            #expect(try await self.call(server, .post, "/v1/polls/\(poll)/open", key: acme.secret).status == .ok)
            let batch = try await self.call(
                server, .post, "/v1/votes:batch", key: globex.secret,
                json: #"{"ballots": [{"poll": "\#(poll)", "voter": "g", "answers": {"q": 9}}]}"#)
            #expect(batch.status == .ok)
            let results = try #require(try batch.object()["results"] as? [[String: Any]])
            #expect(results.first?["status"] as? Int == 404)
            let own = try await self.call(
                server, .post, "/v1/votes:batch", key: acme.secret,
                json: #"{"ballots": [{"poll": "\#(poll)", "voter": "a", "answers": {"q": 9}}]}"#)
            #expect((try own.object()["results"] as? [[String: Any]])?.first?["status"] as? Int == 201)

            // An owner named in a body is not a field a client sets.
            let moved = try await self.call(
                server, .patch, "/v1/polls/\(poll)", key: acme.secret,
                json: #"{"owner": "globex", "title": "Acme only"}"#)
            #expect(moved.status == .ok)
            #expect(
                try await self.call(server, .get, "/v1/polls/\(poll)/export", key: globex.secret).status == .notFound)
            let made2 = try await self.call(
                server, .post, "/v1/polls", key: globex.secret,
                json: TestServer.lunch.replacingOccurrences(of: #""title""#, with: #""owner": "acme", "title""#))
            let globexPoll = try made2.object()["id"] as! String
            #expect(
                try await self.call(server, .get, "/v1/polls/\(globexPoll)/export", key: acme.secret).status
                    == .notFound)
            // Acme's poll is as Acme left it: one ballot, title unchanged, still there.
            let shown = try await self.call(server, .get, "/v1/polls/\(poll)", key: acme.secret)
            #expect(try shown.object()["title"] as? String == "Acme only")
            #expect(try shown.object()["total"] as? Int == 1)
            let acmeList = try await self.call(server, .get, "/v1/polls", key: acme.secret)
            #expect((try acmeList.object()["polls"] as? [[String: Any]])?.map { $0["id"] as? String } == [poll])
            // Another owner's keys are out of reach too.
            let revoke = try await self.call(server, .delete, "/v1/keys/\(acme.id)", key: globex.secret)
            #expect(revoke.status == .notFound)
            #expect(try await self.call(server, .get, "/v1/polls", key: acme.secret).status == .ok)
        }
    }

    @Test func scopesLimitWhatAKeyDoes() async throws {
        try await TestServer.run { server in
            let reader = try await self.key(server, owner: "acme", scopes: ["read"])
            let writer = try await self.key(server, owner: "acme", scopes: ["write"], makeOwner: false)
            let admin = try await self.key(server, owner: "acme", scopes: ["admin", "read"], makeOwner: false)

            #expect(try await self.call(server, .get, "/v1/polls", key: reader.secret).status == .ok)
            let refused = try await self.call(server, .post, "/v1/polls", key: reader.secret, json: TestServer.lunch)
            #expect(refused.status == .forbidden)
            #expect(refused.errorCode == "forbidden")
            let made = try await self.call(server, .post, "/v1/polls", key: writer.secret, json: TestServer.lunch)
            #expect(made.status == .created)
            let poll = try made.object()["id"] as! String
            #expect(
                try await self.call(server, .get, "/v1/polls/\(poll)/export", key: writer.secret).status == .forbidden)
            #expect(try await self.call(server, .get, "/v1/keys", key: writer.secret).status == .forbidden)
            #expect(try await self.call(server, .get, "/v1/audit", key: reader.secret).status == .forbidden)

            // An admin key manages its owner's keys, grants only what it holds, and is no operator.
            #expect(try await self.call(server, .get, "/v1/keys", key: admin.secret).status == .ok)
            let grant = try await self.call(
                server, .post, "/v1/keys", key: admin.secret, json: #"{"scopes": ["write"]}"#)
            #expect(grant.status == .forbidden, "\(grant.text)")
            let granted = try await self.call(
                server, .post, "/v1/keys", key: admin.secret, json: #"{"scopes": ["read"], "name": "viewer"}"#)
            #expect(granted.status == .created)
            #expect(try granted.object()["owner"] as? String == "acme")
            let owners = try await self.call(
                server, .post, "/v1/owners", key: admin.secret, json: #"{"id": "mine", "name": "Mine"}"#)
            #expect(owners.status == .forbidden)
            let elsewhere = try await self.call(
                server, .post, "/v1/keys", key: admin.secret, json: #"{"owner": "default", "scopes": ["read"]}"#)
            #expect(elsewhere.status == .forbidden)
            let unknown = try await self.call(
                server, .post, "/v1/keys", key: admin.secret, json: #"{"scopes": ["read", "superuser"]}"#)
            #expect(unknown.status == .unprocessableContent)
            #expect(unknown.errorField == "scopes")
            let noOwner = try await self.call(
                server, .post, "/v1/keys", key: server.key, json: #"{"owner": "nobody", "scopes": ["read"]}"#)
            #expect(noOwner.status == .notFound)
            // Keys are listed without their secrets, with their last use.
            let listed = try await self.call(server, .get, "/v1/keys", key: admin.secret)
            #expect(!listed.text.contains(reader.secret) && !listed.text.contains("pw_"))
            let keys = try #require(try listed.object()["keys"] as? [[String: Any]])
            #expect(keys.count == 4)
            #expect(keys.first { $0["id"] as? String == reader.id }?["lastUsedAt"] is String)
        }
    }

    @Test func revokedAndExpiredKeysAreRefusedAtOnce() async throws {
        try await TestServer.run { server in
            let acme = try await self.key(server, owner: "acme", scopes: ["read", "admin"])
            #expect(try await self.call(server, .get, "/v1/polls", key: acme.secret).status == .ok)
            let revoked = try await self.call(server, .delete, "/v1/keys/\(acme.id)", key: server.key)
            #expect(revoked.status == .noContent)
            let after = try await self.call(server, .get, "/v1/polls", key: acme.secret)
            #expect(after.status == .unauthorized)
            #expect(after.text.contains("revoked"))
            // A second revoke finds the key and changes nothing.
            #expect(try await self.call(server, .delete, "/v1/keys/\(acme.id)", key: server.key).status == .noContent)

            let soon = Date().addingTimeInterval(1.5).formatted(.iso8601)
            let brief = try await self.key(server, owner: "acme", scopes: ["read"], expiresAt: soon, makeOwner: false)
            #expect(try await self.call(server, .get, "/v1/polls", key: brief.secret).status == .ok)
            try await Task.sleep(for: .seconds(2))
            let expired = try await self.call(server, .get, "/v1/polls", key: brief.secret)
            #expect(expired.status == .unauthorized)
            #expect(expired.text.contains("expired"))
            let past = try await self.call(
                server, .post, "/v1/keys", key: server.key, json: #"{"expiresAt": "2020-01-01T00:00:00Z"}"#)
            #expect(past.status == .unprocessableContent)
        }
    }

    @Test func aFloodOfInvalidKeysIsRateLimitedPerAddress() async throws {
        var settings = PollwireSettings()
        settings.rateLimits.invalidKeysPerIP = .init(rate: 0.1, burst: 5)
        try await TestServer.run(settings: settings) { server in
            var statuses: [Int] = []
            for attempt in 0..<8 {
                statuses.append(
                    Int(try await self.call(server, .get, "/v1/polls", key: "pw_guess\(attempt)").status.code))
            }
            #expect(statuses.prefix(5).allSatisfy { $0 == 401 }, "\(statuses)")
            #expect(statuses.suffix(3).allSatisfy { $0 == 429 }, "\(statuses)")
            let limited = try await self.call(server, .get, "/v1/polls", key: "pw_another")
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] != nil)
            #expect(limited.errorCode == "rate_limited")
        }
    }

    @Test func everyManagementActionIsAudited() async throws {
        try await TestServer.run { server in
            let acme = try await self.key(server, owner: "acme", scopes: ["read", "write", "export", "admin"])
            let made = try await self.call(
                server, .post, "/v1/polls", key: acme.secret, json: TestServer.lunch,
                headers: [HTTPField.Name("X-Request-Id")!: "req-create-1"])
            #expect(made.headers[HTTPField.Name("X-Request-Id")!] == "req-create-1")
            let poll = try made.object()["id"] as! String
            _ = try await self.call(
                server, .patch, "/v1/polls/\(poll)", key: acme.secret, json: #"{"title": "Dinner?"}"#)
            _ = try await self.call(server, .post, "/v1/polls/\(poll)/close", key: acme.secret)
            _ = try await self.call(server, .post, "/v1/polls/\(poll)/reveal", key: acme.secret)
            _ = try await self.call(server, .get, "/v1/polls/\(poll)/export?format=csv", key: acme.secret)
            #expect(try await self.call(server, .delete, "/v1/polls/\(poll)", key: acme.secret).status == .noContent)

            let log = try await self.call(server, .get, "/v1/audit?poll=\(poll)", key: acme.secret)
            #expect(log.status == .ok)
            #expect(log.headers[.contentType] == "application/x-ndjson")
            let entries = try log.text.split(separator: "\n").map {
                try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
            #expect(
                entries.map { $0["action"] as? String }
                    == ["poll.create", "poll.update", "poll.close", "poll.reveal", "poll.export", "poll.delete"])
            #expect(entries.allSatisfy { $0["key"] as? String == acme.id && $0["owner"] as? String == "acme" })
            #expect(entries.first?["requestId"] as? String == "req-create-1")
            let update = try #require(entries[1]["detail"] as? [String: Any])
            #expect((update["title"] as? [String: Any])?["to"] as? String == "Dinner?")
            #expect((update["title"] as? [String: Any])?["from"] as? String == "Lunch?")
            #expect(
                ((entries[2]["detail"] as? [String: Any])?["status"] as? [String: Any])?["to"] as? String == "closed")

            // The owner sees its own log only; the operator sees every owner's and filters.
            let own = try await self.call(server, .get, "/v1/audit", key: acme.secret)
            #expect(!own.text.contains("\"owner\":\"default\""))
            let other = try await self.call(server, .get, "/v1/audit?owner=default", key: acme.secret)
            #expect(other.status == .forbidden)
            let byKey = try await self.call(server, .get, "/v1/audit?key=\(acme.id)&limit=2", key: server.key)
            #expect(byKey.text.split(separator: "\n").count == 2)
            let all = try await self.call(server, .get, "/v1/audit", key: server.key)
            #expect(all.text.contains("\"action\":\"owner.create\"") && all.text.contains("\"action\":\"key.create\""))
            let future = try await self.call(server, .get, "/v1/audit?from=2099-01-01T00:00:00Z", key: server.key)
            #expect(future.status == .ok && future.text.isEmpty)
            #expect(
                try await self.call(server, .get, "/v1/audit?from=yesterday", key: server.key).status
                    == .unprocessableContent)

            // Append-only in the file itself.
            #expect(throws: DatabaseError.self) {
                try server.database.pool.write { try $0.execute(sql: "UPDATE audit_log SET action = 'nothing'") }
            }
            #expect(throws: DatabaseError.self) {
                try server.database.pool.write { try $0.execute(sql: "DELETE FROM audit_log") }
            }
        }
    }
}
