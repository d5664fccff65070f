import Foundation
import HTTPTypes
import HummingbirdTesting
import PollwireEngine
import PollwireHTTP
import Testing

@Suite struct RateLimitTests {
    static func settings(_ change: (inout RateLimitSettings) -> Void) -> PollwireSettings {
        var settings = PollwireSettings()
        change(&settings.rateLimits)
        return settings
    }

    @Test func votesFromOneAddressAreLimitedWith429AndHeaders() async throws {
        let settings = Self.settings { $0.votesPerIP = .init(rate: 0.5, burst: 3) }
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            for voter in 0..<3 {
                #expect(
                    try await server.vote(poll, #"{"voter": "\#(voter)", "answers": {"q1": ["a"]}}"#).status == .created
                )
            }
            let limited = try await server.vote(poll, #"{"voter": "9", "answers": {"q1": ["a"]}}"#)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.errorCode == "rate_limited")
            let retryAfter = try #require(limited.headers[.retryAfter].flatMap(Int.init))
            #expect(retryAfter >= 1 && retryAfter <= 2)
            #expect(limited.headers[HTTPField.Name("RateLimit-Policy")!] == #""votes-ip";q=3;w=6"#)
            #expect(limited.headers[HTTPField.Name("RateLimit")!] == #""votes-ip";r=0;t=\#(retryAfter)"#)
            // The refused vote was not counted.
            #expect(try await server.request(.get, "/v1/polls/\(poll)/results").object()["total"] as? Int == 3)
        }
    }

    @Test func allowListedAddressesAreNotLimited() async throws {
        let settings = Self.settings {
            $0.votesPerIP = .init(rate: 0.5, burst: 1)
            $0.allowList = ["127.0.0.1"]
        }
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            for voter in 0..<5 {
                #expect(
                    try await server.vote(poll, #"{"voter": "\#(voter)", "answers": {"q1": ["a"]}}"#).status == .created
                )
            }
        }
    }

    /// X-Forwarded-For counts only from a trusted proxy; then each client has its own budget.
    @Test func forwardedForIsBelievedOnlyFromTrustedProxies() async throws {
        let forwarded = HTTPField.Name("X-Forwarded-For")!
        let trusted = Self.settings {
            $0.votesPerIP = .init(rate: 0.5, burst: 1)
            $0.trustedProxies = ["127.0.0.1"]
        }
        try await TestServer.run(settings: trusted) { server in
            let poll = try await server.createPoll()
            let first = try await server.vote(
                poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#, headers: [forwarded: "203.0.113.5"])
            let second = try await server.vote(
                poll, #"{"voter": "2", "answers": {"q1": ["a"]}}"#, headers: [forwarded: "198.51.100.7, 127.0.0.1"])
            let again = try await server.vote(
                poll, #"{"voter": "3", "answers": {"q1": ["a"]}}"#, headers: [forwarded: "203.0.113.5"])
            #expect(first.status == .created)
            #expect(second.status == .created)
            #expect(again.status == .tooManyRequests)
        }
        let untrusted = Self.settings { $0.votesPerIP = .init(rate: 0.5, burst: 1) }
        try await TestServer.run(settings: untrusted) { server in
            let poll = try await server.createPoll()
            _ = try await server.vote(
                poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#, headers: [forwarded: "203.0.113.5"])
            let spoofed = try await server.vote(
                poll, #"{"voter": "2", "answers": {"q1": ["a"]}}"#, headers: [forwarded: "198.51.100.7"])
            #expect(spoofed.status == .tooManyRequests, "a client cannot pick its own address")
        }
    }

    @Test func oneVoterIsLimitedPerPollAndDeviceTokensPerAddress() async throws {
        let settings = Self.settings {
            $0.votesPerVoter = .init(rate: 0.2, burst: 2)
            $0.deviceTokensPerIP = .init(rate: 0.2, burst: 2)
        }
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let attempts = try await (0..<3).asyncMap { _ in
                try await server.vote(poll, #"{"voter": "same", "answers": {"q1": ["a"]}}"#).status
            }
            #expect(attempts == [.created, .ok, .tooManyRequests])
            #expect(try await server.vote(poll, #"{"voter": "other", "answers": {"q1": ["a"]}}"#).status == .created)
            let tokens = try await (0..<3).asyncMap { _ in try await server.request(.post, "/v1/device-tokens").status }
            #expect(tokens == [.created, .created, .tooManyRequests])
        }
    }

    /// A poll can set its own per-voter limit, tighter or looser than the server's.
    @Test func aPollSetsItsOwnVoterLimit() async throws {
        let settings = Self.settings { $0.votesPerVoter = .init(rate: 0.2, burst: 2) }
        try await TestServer.run(settings: settings) { server in
            let strict = try await server.createPoll(
                TestServer.lunch(settings: #"{"voterLimit": {"rate": 0.1, "burst": 1}}"#))
            let loose = try await server.createPoll(
                TestServer.lunch(settings: #"{"voterLimit": {"rate": 10, "burst": 6}}"#))
            let vote = #"{"voter": "same", "answers": {"q1": ["a"]}}"#
            let strictAttempts = try await (0..<2).asyncMap { _ in try await server.vote(strict, vote).status }
            #expect(strictAttempts == [.created, .tooManyRequests])
            let looseAttempts = try await (0..<4).asyncMap { _ in try await server.vote(loose, vote).status }
            #expect(looseAttempts == [.created, .ok, .ok, .ok])
            let invalid = try await server.request(
                .post, "/v1/polls", json: TestServer.lunch(settings: #"{"voterLimit": {"rate": 0, "burst": 1}}"#),
                auth: true)
            #expect(invalid.status == .unprocessableContent)
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
