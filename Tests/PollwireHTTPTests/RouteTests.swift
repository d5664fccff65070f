import HTTPTypes
import Testing

@testable import PollwireHTTP

/// The one route map, table-driven: what each method and path is, and which are voter routes.
@Suite struct RouteTests {
    static let table: [(HTTPRequest.Method, String, Route, Bool)] = [
        (.get, "/v1/polls/abc/results", .results(poll: "abc"), true),
        (.head, "/v1/polls/abc/results?receipt=x", .results(poll: "abc"), true),
        (.post, "/v1/polls/abc/results", .other, false),
        (.get, "/v1/results?polls=a,b", .manyResults, true),
        (.post, "/v1/polls/abc/votes", .vote(poll: "abc"), true),
        (.get, "/v1/polls/abc/votes", .other, false),
        (.post, "/v1/votes:batch", .votesBatch, false),
        (.get, "/v1/polls/abc", .poll("abc"), true),
        (.delete, "/v1/polls/abc", .other, false),
        (.get, "/v1/polls/abc/live", .liveEvents(poll: "abc"), true),
        (.head, "/v1/polls/abc/live", .liveEvents(poll: "abc"), true),
        (.get, "/v1/live", .liveSocket, false),
        (.post, "/v1/device-tokens", .deviceTokens, true),
        (.get, "/healthz", .operations, false),
        (.get, "/metrics?x=1", .operations, false),
        (.get, "/readyz", .operations, false),
        (.get, "/v1/polls", .other, false),
        (.get, "/v1/polls/", .other, false),
        (.get, "/v1/polls//results", .other, false),
        (.get, "/v1/polls/abc/results/x", .other, false),
        (.get, "/v1/polls/äbc/results", .results(poll: "äbc"), true),
        (.get, "/admin", .other, false),
        (.get, "", .other, false),
    ]

    @Test func everyPathIsWhatItSays() {
        for (method, path, route, voter) in Self.table {
            let decided = Route(method: method, path: Substring(path))
            #expect(decided == route, "\(method) \(path)")
            #expect(decided.isVoterRoute == voter, "\(method) \(path)")
        }
    }
}
