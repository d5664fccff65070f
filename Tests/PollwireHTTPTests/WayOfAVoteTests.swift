import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import PollwireEngine
import PollwireHTTP
import Testing

/// The README's walk-through, over a real socket: create, vote, read results, 304, the timeline.
@Suite struct WayOfAVoteTests {
    @Test func createVoteReadAndRevalidate() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()

            let first = try await server.vote(poll, #"{"voter": "u-17", "answers": {"q1": ["a"]}}"#)
            #expect(first.status == .created)
            #expect(first.text.hasPrefix(#"{"accepted":true,"version":1,"ballot":{"hash":""#))
            #expect(first.text.hasSuffix(#"","position":1,"shard":0}}"#))

            let again = try await server.vote(poll, #"{"voter": "u-17", "answers": {"q1": ["a"]}}"#)
            #expect(again.status == .ok)
            #expect(try again.object()["duplicate"] as? Bool == true)

            let other = try await server.vote(poll, #"{"voter": "u-17", "answers": {"q1": ["b"]}}"#)
            #expect(other.status == .conflict)
            #expect(other.errorCode == "already_voted")

            _ = try await server.vote(poll, #"{"voter": "u-18", "answers": {"q1": ["b"]}}"#)
            let results = try await server.request(.get, "/v1/polls/\(poll)/results")
            #expect(results.status == .ok)
            #expect(results.headers[.eTag] == "W/\"\(poll)-2\"")
            #expect(results.headers[.cacheControl] == "public, max-age=1, s-maxage=1, stale-while-revalidate=5")
            #expect(results.headers[HTTPField.Name("Surrogate-Key")!] == "poll-\(poll)")
            let body = try results.object()
            #expect(body["version"] as? Int == 2)
            #expect(body["total"] as? Int == 2)
            let options = ((body["questions"] as? [[String: Any]])?.first?["options"] as? [[String: Any]]) ?? []
            #expect(options.map { $0["count"] as? Int } == [1, 1])

            let notModified = try await server.request(
                .get, "/v1/polls/\(poll)/results", headers: [.ifNoneMatch: "\"\(poll)-2\""])
            #expect(notModified.status == .notModified)
            #expect(notModified.body.readableBytes == 0)

            // Votes over time, as the README asks for them: both ballots in the last ten minutes.
            let timeline = try await server.request(.get, "/v1/polls/\(poll)/timeline?window=10s").object()
            #expect(
                (timeline["totals"] as? [String: Any])?["counts"] as? [String: [String: Int]] == [
                    "q1": ["a": 1, "b": 1]
                ])

            // The snapshot is encoded once per version: every read until the version moves is
            // served from the very same buffer (same storage, not only equal bytes).
            let again2 = try await server.request(.get, "/v1/polls/\(poll)/results")
            #expect(again2.body == results.body)
            let book = server.parts.book
            let cachedOnce = try #require(book.snapshot(of: poll, hidden: false))
            let cachedTwice = try #require(book.snapshot(of: poll, hidden: false))
            #expect(Self.storage(cachedOnce.body) == Self.storage(cachedTwice.body))
            _ = try await server.vote(poll, #"{"voter": "u-19", "answers": {"q1": ["b"]}}"#)
            let moved = try #require(book.snapshot(of: poll, hidden: false))
            #expect(moved.version == 3 && Self.storage(moved.body) != Self.storage(cachedOnce.body))
            let stale = try await server.request(
                .get, "/v1/polls/\(poll)/results", headers: [.ifNoneMatch: "\"\(poll)-2\""])
            #expect(stale.status == .ok)
            #expect(stale.headers[.eTag] == "W/\"\(poll)-3\"")
        }
    }

    @Test func batchResultsListPollsInOrderAndNameTheMissing() async throws {
        try await TestServer.run { server in
            let one = try await server.createPoll()
            let two = try await server.createPoll()
            _ = try await server.vote(two, #"{"voter": "x", "answers": {"q1": ["b"]}}"#)
            let response = try await server.request(.get, "/v1/results?polls=\(two),nope,\(one)")
            #expect(response.status == .ok)
            let body = try response.object()
            let results = try #require(body["results"] as? [[String: Any]])
            #expect(results.map { $0["poll"] as? String } == [two, one])
            #expect(results.map { $0["total"] as? Int } == [1, 0])
            #expect(body["missing"] as? [String] == ["nope"])
            let etag = try #require(response.headers[.eTag])
            let cached = try await server.request(
                .get, "/v1/results?polls=\(two),nope,\(one)", headers: [.ifNoneMatch: etag])
            #expect(cached.status == .notModified)
            let bad = try await server.request(.get, "/v1/results")
            #expect(bad.status == .badRequest)
        }
    }

    @Test func idempotencyKeyReplaysTheOriginalAnswer() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(TestServer.lunch(settings: #"{"dedupe": "none"}"#))
            let first = try await server.vote(
                poll, #"{"answers": {"q1": ["a"]}}"#, headers: [HTTPField.Name("Idempotency-Key")!: "retry-1"])
            #expect(first.status == .created)
            _ = try await server.vote(poll, #"{"answers": {"q1": ["b"]}}"#)
            let retry = try await server.vote(
                poll, #"{"answers": {"q1": ["a"]}}"#, headers: [HTTPField.Name("Idempotency-Key")!: "retry-1"])
            #expect(retry.status == .created)
            #expect(retry.text == first.text)
            #expect(retry.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            let misuse = try await server.vote(
                poll, #"{"answers": {"q1": ["b"]}}"#, headers: [HTTPField.Name("Idempotency-Key")!: "retry-1"])
            #expect(misuse.status == .unprocessableContent)
            #expect(misuse.errorCode == "idempotency_key_reused")
            let results = try await server.request(.get, "/v1/polls/\(poll)/results")
            #expect(try results.object()["total"] as? Int == 2)
        }
    }

    @Test func changedVotesMoveTheTallies() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(TestServer.lunch(settings: #"{"allowChange": true}"#))
            _ = try await server.vote(poll, #"{"voter": "v", "answers": {"q1": ["a"]}}"#)
            let change = try await server.vote(poll, #"{"voter": "v", "answers": {"q1": ["b"]}}"#)
            #expect(change.status == .ok)
            #expect(try change.object()["changed"] as? Bool == true)
            let body = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            let options = ((body["questions"] as? [[String: Any]])?.first?["options"] as? [[String: Any]]) ?? []
            #expect(body["total"] as? Int == 1)
            #expect(options.map { $0["count"] as? Int } == [0, 1])
        }
    }

    @Test func deviceTokensAreSignedByTheServer() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(TestServer.lunch(settings: #"{"dedupe": "device"}"#))
            let issued = try await server.request(.post, "/v1/device-tokens")
            #expect(issued.status == .created)
            let token = try issued.object()["token"] as! String
            let vote = try await server.vote(poll, #"{"device": "\#(token)", "answers": {"q1": ["a"]}}"#)
            #expect(vote.status == .created)
            let again = try await server.vote(
                poll, #"{"answers": {"q1": ["b"]}}"#, headers: [HTTPField.Name("Pollwire-Device")!: token])
            #expect(again.status == .conflict)
            let forged = try await server.vote(
                poll, #"{"device": "\#(token.prefix(22)).AAAA", "answers": {"q1": ["a"]}}"#)
            #expect(forged.status == .forbidden)
            let missing = try await server.vote(poll, #"{"answers": {"q1": ["a"]}}"#)
            #expect(missing.status == .unprocessableContent)
            #expect(missing.errorField == "device")
        }
    }

    /// Where a buffer's bytes live: equal for two views of one storage.
    static func storage(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    /// A poll created with no settings dedupes by voter; a browser that names no voter (the widget
    /// on a page without `data-voter`) is one voter per signed device token.
    @Test func aDefaultPollTakesADeviceTokenWhenNoVoterIsNamed() async throws {
        try await TestServer.run { server in
            // The README's example, with no settings.
            let poll = try await server.createPoll(
                """
                {"title": "Lunch?",
                 "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
                                "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}]}
                """)
            let missing = try await server.vote(poll, #"{"answers": {"q1": ["a"]}}"#)
            #expect(missing.status == .unprocessableContent)
            #expect(missing.errorField == "voter")
            let token = try await server.request(.post, "/v1/device-tokens").object()["token"] as! String
            let vote = try await server.vote(poll, #"{"device": "\#(token)", "answers": {"q1": ["a"]}}"#)
            #expect(vote.status == .created)
            let again = try await server.vote(poll, #"{"device": "\#(token)", "answers": {"q1": ["b"]}}"#)
            #expect(again.status == .conflict)
            let forged = try await server.vote(
                poll, #"{"device": "\#(token.prefix(22)).AAAA", "answers": {"q1": ["a"]}}"#)
            #expect(forged.status == .forbidden)
            #expect(forged.errorField == "device")
            // A named voter is a voter of its own, even from the same device.
            let named = try await server.vote(
                poll, #"{"voter": "u-17", "device": "\#(token)", "answers": {"q1": ["b"]}}"#)
            #expect(named.status == .created)
            let body = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            let options = ((body["questions"] as? [[String: Any]])?.first?["options"] as? [[String: Any]]) ?? []
            #expect(options.map { $0["count"] as? Int } == [1, 1])
        }
    }

    @Test func batchVotesAnswerEachBallotInOneCommit() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            var ballots: [String] = []
            for index in 0..<1000 {
                switch index % 10 {
                case 9: ballots.append(#"{"poll": "\#(poll)", "voter": "v\#(index)", "answers": {"q1": ["zzz"]}}"#)
                case 8: ballots.append(#"{"poll": "\#(poll)", "voter": "v0", "answers": {"q1": ["b"]}}"#)
                default: ballots.append(#"{"poll": "\#(poll)", "voter": "v\#(index)", "answers": {"q1": ["a"]}}"#)
                }
            }
            let body = "{\"ballots\": [\(ballots.joined(separator: ","))]}"
            let unauthorized = try await server.request(.post, "/v1/votes:batch", json: body)
            #expect(unauthorized.status == .unauthorized)
            let response = try await server.request(.post, "/v1/votes:batch", json: body, auth: true)
            #expect(response.status == .ok)
            let results = try #require(try response.object()["results"] as? [[String: Any]])
            #expect(results.count == 1000)
            #expect(results[0]["status"] as? Int == 201)
            #expect(results[0]["version"] as? Int == 1)
            #expect(results[8]["status"] as? Int == 409)
            #expect(results[9]["status"] as? Int == 422)
            #expect(((results[9]["error"] as? [String: Any])?["field"] as? String) == "ballots[9].answers.q1[0]")
            #expect(results.filter { $0["status"] as? Int == 201 }.count == 800)
            // All in one transaction: every accepted ballot carries the same version.
            #expect(Set(results.compactMap { $0["version"] as? Int }) == [1])
            let tooMany = "{\"ballots\": [\((ballots + ballots).joined(separator: ","))]}"
            let rejected = try await server.request(.post, "/v1/votes:batch", json: tooMany, auth: true)
            #expect(rejected.status == .unprocessableContent)
        }
    }
}
