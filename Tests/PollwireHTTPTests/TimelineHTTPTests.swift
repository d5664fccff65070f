import Foundation
import HTTPTypes
import HummingbirdTesting
import PollwireCore
import PollwireEngine
import PollwireHTTP
import Testing

/// `GET /v1/polls/{id}/timeline` over a real socket: the windows votes land in, what a reader
/// who may not see results gets, and the errors for parameters that do not parse.
@Suite struct TimelineHTTPTests {
    @Test func votesLandInTheWindowOfTheSecondTheyAreStored() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            for voter in 0..<3 {
                let answer = try await server.vote(poll, #"{"voter": "v\#(voter)", "answers": {"q1": ["a"]}}"#)
                #expect(answer.status == .created)
            }
            _ = try await server.vote(poll, #"{"voter": "v9", "answers": {"q1": ["b"]}}"#)
            let response = try await server.request(.get, "/v1/polls/\(poll)/timeline?window=1m")
            #expect(response.status == .ok, "\(response.text)")
            #expect(response.headers[.cacheControl] == "public, max-age=1")
            let timeline = try response.object()
            #expect(timeline["window"] as? String == "1m")
            #expect(timeline["seconds"] as? Int == 60)
            let windows = try #require(timeline["windows"] as? [[String: Any]])
            #expect(windows.count == 60)
            #expect(windows.reduce(0) { $0 + ($1["ballots"] as! Int) } == 4)
            let totals = try #require(timeline["totals"] as? [String: Any])
            #expect(totals["ballots"] as? Int == 4)
            #expect(totals["counts"] as? [String: [String: Int]] == ["q1": ["a": 3, "b": 1]])
            // The last window is the one now is in: not complete yet.
            #expect(windows.last?["complete"] as? Bool == false)
            #expect(windows.first?["complete"] as? Bool == true)
            #expect(timeline["momentum"] is [String: Any])
        }
    }

    /// A batch ballot with its own `castAt` counts in that time's window while it is within the
    /// allowed lateness; an older one is stored, counted in the results and in the `late` total
    /// (never in a window); one in the future is a 422 naming its field, and the rest of the
    /// batch is stored. Windows older than the lateness are final.
    @Test func batchBallotsWithCastAtLandInTheirOwnWindowOrInLate() async throws {
        var settings = PollwireSettings()
        settings.allowedLatenessSeconds = 120
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let now = Date()
            func at(_ offset: Double) -> String {
                now.addingTimeInterval(offset).formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
            }
            let body = #"""
                {"ballots": [
                  {"poll": "\#(poll)", "voter": "early", "castAt": "\#(at(-90))", "answers": {"q1": ["a"]}},
                  {"poll": "\#(poll)", "voter": "stale", "castAt": "\#(at(-600))", "answers": {"q1": ["b"]}},
                  {"poll": "\#(poll)", "voter": "ahead", "castAt": "\#(at(3600))", "answers": {"q1": ["b"]}},
                  {"poll": "\#(poll)", "voter": "skewed", "castAt": "\#(at(0.5))", "answers": {"q1": ["b"]}},
                  {"poll": "\#(poll)", "voter": "plain", "answers": {"q1": ["a"]}}
                ]}
                """#
            let answer = try await server.request(.post, "/v1/votes:batch", json: body, auth: true)
            #expect(answer.status == .ok, "\(answer.text)")
            let results = try #require(try answer.object()["results"] as? [[String: Any]])
            #expect(results.map { $0["status"] as? Int } == [201, 201, 422, 201, 201], "\(answer.text)")
            let refused = try #require(results[2]["error"] as? [String: Any])
            #expect(refused["field"] as? String == "ballots[2].castAt")
            // Every stored ballot is in the results, the late one too.
            let counts = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(counts["total"] as? Int == 4, "\(counts)")

            let response = try await server.request(.get, "/v1/polls/\(poll)/timeline?window=1m&from=\(at(-300))")
            #expect(response.status == .ok, "\(response.text)")
            let timeline = try response.object()
            let windows = try #require(timeline["windows"] as? [[String: Any]])
            let totals = try #require(timeline["totals"] as? [String: Any])
            #expect(totals["ballots"] as? Int == 3, "\(response.text)")
            #expect(totals["late"] as? Int == 1)
            #expect(totals["counts"] as? [String: [String: Int]] == ["q1": ["a": 2, "b": 1]])
            // The early ballot sits in the window 90 s ago, not in the one it arrived in.
            let early = Int64(now.timeIntervalSince1970 - 90) / 60 * 60
            let window = try #require(
                windows.first { PollwireJSON.date($0["start"] as! String)?.timeIntervalSince1970 == Double(early) })
            #expect((window["counts"] as? [String: [String: Int]])?["q1"]?["a"] == 1, "\(window)")
            #expect(windows.last?["late"] as? Int == 1 || windows.dropLast().last?["late"] as? Int == 1)
            // Windows that ended more than 120 s ago are final; the current one is not.
            #expect(windows.first?["final"] as? Bool == true)
            #expect(windows.last?["final"] as? Bool == false)
            #expect(timeline["watermark"] is String)
        }
    }

    @Test func beforeResultsShowTheTimelineCarriesBallotCountsOnly() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "after_close", "dedupe": "voter"}"#))
            _ = try await server.vote(poll, #"{"voter": "v1", "answers": {"q1": ["a"]}}"#)
            let response = try await server.request(.get, "/v1/polls/\(poll)/timeline?window=10s")
            #expect(response.status == .ok)
            #expect(response.headers[.cacheControl] == "no-store")
            let timeline = try response.object()
            #expect(timeline["hidden"] as? Bool == true)
            #expect((timeline["totals"] as? [String: Any])?["ballots"] as? Int == 1)
            #expect((timeline["totals"] as? [String: Any])?["counts"] == nil)
            #expect(timeline["momentum"] == nil)
            #expect(!response.text.contains("\"a\""))
        }
    }

    @Test func parametersThatDoNotParseNameTheirField() async throws {
        var settings = PollwireSettings()
        settings.rateLimits.timelinesPerIP = .init(rate: 0.001, burst: 8)
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let cases: [(String, String)] = [
                ("window=7s", "window"), ("momentum=0", "momentum"), ("momentum=x", "momentum"),
                ("from=yesterday", "from"), ("from=2000&to=1000", "from"), ("window=1s&from=0", "window"),
                ("from=1e300", "from"), ("to=-1e300", "to"), ("to=9e18", "to"), ("from=-1", "from"),
            ]
            for (query, field) in cases {
                let response = try await server.request(.get, "/v1/polls/\(poll)/timeline?\(query)")
                #expect(response.status == .unprocessableContent, "\(query): \(response.text)")
                #expect(response.errorField == field, "\(query)")
            }
            let missing = try await server.request(.get, "/v1/polls/nope/timeline")
            #expect(missing.status == .notFound)
            // Each answered read counts against the address's limit (burst 8, no refill to speak of).
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<10 { statuses.append(try await server.request(.get, "/v1/polls/\(poll)/timeline").status) }
            #expect(statuses.contains(.tooManyRequests))
            #expect(statuses.filter { $0 == .ok }.count == 7)
        }
    }
}
