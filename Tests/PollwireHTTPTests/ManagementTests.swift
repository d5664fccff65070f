import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import PollwireEngine
import Testing

@Suite struct ManagementTests {
    @Test func pollLifecycle() async throws {
        try await TestServer.run { server in
            let draft = try await server.request(
                .post, "/v1/polls",
                json:
                    #"{"title": "Later", "status": "draft", "questions": [{"id": "q", "kind": "nps", "prompt": "?"}]}"#,
                auth: true)
            #expect(draft.status == .created)
            let id = try draft.object()["id"] as! String
            #expect(draft.headers[.location] == "/v1/polls/\(id)")
            #expect(try draft.object()["status"] as? String == "draft")

            // Drafts are not public and take no votes.
            #expect(try await server.request(.get, "/v1/polls/\(id)").status == .notFound)
            let early = try await server.vote(id, #"{"voter": "v", "answers": {"q": 9}}"#)
            #expect(early.status == .forbidden)
            #expect(early.errorCode == "poll_not_open")

            let opened = try await server.request(.post, "/v1/polls/\(id)/open", auth: true)
            #expect(try opened.object()["status"] as? String == "open")
            let shown = try await server.request(.get, "/v1/polls/\(id)")
            #expect(shown.status == .ok)
            #expect(try shown.object()["title"] as? String == "Later")
            #expect(try await server.vote(id, #"{"voter": "v", "answers": {"q": 9}}"#).status == .created)

            let patched = try await server.request(
                .patch, "/v1/polls/\(id)", json: #"{"title": "Renamed", "closesAt": "2099-01-01T00:00:00Z"}"#,
                auth: true)
            #expect(patched.status == .ok)
            #expect(try patched.object()["title"] as? String == "Renamed")
            #expect(try patched.object()["closesAt"] as? String == "2099-01-01T00:00:00.000Z")
            let questions = try await server.request(
                .patch, "/v1/polls/\(id)", json: #"{"questions": [{"id": "z", "kind": "nps", "prompt": "?"}]}"#,
                auth: true)
            #expect(questions.status == .conflict)

            let list = try await server.request(.get, "/v1/polls", auth: true)
            let polls = try #require(try list.object()["polls"] as? [[String: Any]])
            #expect(polls.map { $0["id"] as? String } == [id])
            #expect(polls.first?["total"] as? Int == 1)

            let closed = try await server.request(.post, "/v1/polls/\(id)/close", auth: true)
            #expect(try closed.object()["phase"] as? String == "closed")
            #expect(try await server.vote(id, #"{"voter": "w", "answers": {"q": 1}}"#).status == .forbidden)

            #expect(try await server.request(.delete, "/v1/polls/\(id)", auth: true).status == .noContent)
            #expect(try await server.request(.get, "/v1/polls/\(id)/results").status == .notFound)
            #expect(try await server.request(.delete, "/v1/polls/\(id)", auth: true).status == .notFound)
        }
    }

    @Test func visibilityRulesApplyToResults() async throws {
        try await TestServer.run { server in
            let hidden = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "hidden_until_reveal"}"#))
            _ = try await server.vote(hidden, #"{"voter": "v", "answers": {"q1": ["a"]}}"#)
            let before = try await server.request(.get, "/v1/polls/\(hidden)/results")
            #expect(try before.object()["hidden"] as? Bool == true)
            #expect(try before.object()["total"] as? Int == 1)
            #expect(try before.object()["questions"] == nil)
            #expect(before.headers[.eTag] == "W/\"\(hidden)-1-h\"")
            _ = try await server.request(.post, "/v1/polls/\(hidden)/reveal", auth: true)
            let after = try await server.request(.get, "/v1/polls/\(hidden)/results")
            #expect(try after.object()["hidden"] as? Bool == false)
            #expect(after.headers[.eTag] == "W/\"\(hidden)-1\"")

            let afterVote = try await server.createPoll(TestServer.lunch(settings: #"{"visibility": "after_vote"}"#))
            let vote = try await server.vote(afterVote, #"{"voter": "v", "answers": {"q1": ["b"]}}"#)
            let receipt = try #require(try vote.object()["receipt"] as? String)
            let anonymous = try await server.request(.get, "/v1/polls/\(afterVote)/results")
            #expect(try anonymous.object()["hidden"] as? Bool == true)
            let voter = try await server.request(
                .get, "/v1/polls/\(afterVote)/results", headers: [HTTPField.Name("Pollwire-Receipt")!: receipt])
            #expect(try voter.object()["hidden"] as? Bool == false)
            #expect(voter.headers[.cacheControl] == "private, no-cache")
            let forged = try await server.request(.get, "/v1/polls/\(afterVote)/results?receipt=AAAA")
            #expect(try forged.object()["hidden"] as? Bool == true)
        }
    }

    @Test func exportStreamsEveryBallot() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(
                """
                {"title": "Feedback", "questions": [
                  {"id": "q1", "kind": "single", "prompt": "?", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]},
                  {"id": "why", "kind": "text", "prompt": "Why?", "required": false}]}
                """)
            var ballots: [String] = []
            for index in 0..<2500 {
                ballots.append(
                    #"{"poll": "\#(poll)", "voter": "v\#(index)", "answers": {"q1": ["a"], "why": "x, \"y\"\#(index)"}}"#
                )
            }
            for chunk in stride(from: 0, to: 2500, by: 1000) {
                let body = "{\"ballots\": [\(ballots[chunk..<min(chunk + 1000, 2500)].joined(separator: ","))]}"
                #expect(try await server.request(.post, "/v1/votes:batch", json: body, auth: true).status == .ok)
            }
            let csv = try await server.request(.get, "/v1/polls/\(poll)/export?format=csv", auth: true)
            #expect(csv.status == .ok)
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            let lines = csv.text.split(separator: "\r\n")
            #expect(lines.count == 2501)
            #expect(lines[0] == "sequence,voter,revision,version,created_at,cast_at,late,q1,why")
            #expect(lines[1].hasSuffix(",a,\"x, \"\"y\"\"0\""))

            let ndjson = try await server.request(.get, "/v1/polls/\(poll)/export?format=ndjson", auth: true)
            let rows = ndjson.text.split(separator: "\n")
            #expect(rows.count == 2500)
            let last = try JSONSerialization.jsonObject(with: Data(rows[2499].utf8)) as? [String: Any]
            #expect(last?["voter"] as? String == "v:v2499")
            #expect((last?["answers"] as? [String: Any])?["why"] as? String == "x, \"y\"2499")
            #expect(
                try await server.request(.get, "/v1/polls/\(poll)/export?format=xml", auth: true).status == .badRequest)
        }
    }

    @Test func operationsEndpoints() async throws {
        try await TestServer.run { server in
            #expect(try await server.request(.get, "/healthz").status == .ok)
            #expect(try await server.request(.get, "/readyz").status == .ok)
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "v", "answers": {"q1": ["a"]}}"#)
            _ = try await server.vote(poll, #"{"voter": "v", "answers": {"q1": ["b"]}}"#)
            _ = try await server.request(.get, "/v1/polls/\(poll)/results")
            let metrics = try await server.request(.get, "/metrics")
            #expect(metrics.status == .ok)
            let text = metrics.text
            #expect(
                text.contains(
                    #"pollwire_http_requests_total{route="/v1/polls/{id}/votes",method="POST",status="201"} 1"#))
            #expect(
                text.contains(
                    #"pollwire_http_requests_total{route="/v1/polls/{id}/votes",method="POST",status="409"} 1"#))
            #expect(text.contains(#"pollwire_votes_total{result="accepted"} 1"#))
            #expect(text.contains(#"pollwire_votes_total{result="conflict"} 1"#))
            #expect(text.contains("pollwire_ingest_batch_size_bucket"))
            #expect(text.contains("pollwire_ingest_commit_duration_seconds_bucket"))
            #expect(text.contains("pollwire_http_request_duration_seconds_bucket"))
            #expect(!text.contains(poll), "poll ids must never be label values")
        }
    }
}
