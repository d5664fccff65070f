import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import PollwireEngine
import PollwireHTTP
import PollwireSQLite
import Testing

/// Bad input gets the one JSON error shape with the right status, and changes nothing.
@Suite struct ErrorsAndLimitsTests {
    @Test func everyErrorHasTheOneShape() async throws {
        var settings = PollwireSettings()
        settings.maxBodyBytes = 1024
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let cases: [(TestResponse, HTTPResponse.Status, String)] = [
                (try await server.vote(poll, "{not json"), .badRequest, "invalid_json"),
                (
                    try await server.request(
                        .post, "/v1/polls/\(poll)/votes", json: "{}", headers: [.contentType: "text/plain"]),
                    .unsupportedMediaType, "unsupported_media_type"
                ),
                (
                    try await server.vote(poll, "{\"voter\": \"\(String(repeating: "x", count: 2000))\"}"),
                    .contentTooLarge, "payload_too_large"
                ),
                (try await server.vote(poll, #"{"voter": "v"}"#), .unprocessableContent, "invalid_field"),
                (
                    try await server.vote(poll, #"{"voter": "v", "answers": {"q1": 3}}"#), .unprocessableContent,
                    "invalid_field"
                ),
                (try await server.vote("nope", #"{"voter": "v", "answers": {"q1": ["a"]}}"#), .notFound, "not_found"),
                (try await server.request(.get, "/v1/polls"), .unauthorized, "unauthorized"),
                (
                    try await server.request(.get, "/v1/polls", headers: [.authorization: "Bearer pw_wrong"]),
                    .unauthorized, "unauthorized"
                ),
                (try await server.request(.get, "/v1/nothing-here"), .notFound, "not_found"),
                (
                    try await server.request(.post, "/v1/polls", json: #"{"title": "", "questions": []}"#, auth: true),
                    .unprocessableContent, "invalid_field"
                ),
            ]
            for (response, status, code) in cases {
                #expect(response.status == status, "\(response.text)")
                #expect(response.errorCode == code, "\(response.text)")
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            }
            let missing = try await server.vote(poll, #"{"voter": "v"}"#)
            #expect(missing.errorField == "answers")
            let wrongOption = try await server.vote(poll, #"{"voter": "v", "answers": {"q1": ["c"]}}"#)
            #expect(wrongOption.errorField == "answers.q1[0]")
            // None of it was counted.
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(results["total"] as? Int == 0)
        }
    }

    @Test func aFullQueueAnswers503WithRetryAfter() async throws {
        var settings = PollwireSettings()
        settings.ingest = .init(maxBatch: 1, queueCapacity: 1)
        settings.retryAfterSeconds = 2
        let gate = Gate()
        try await TestServer.run(settings: settings, voteStore: gate.heldStore) { server in
            let poll = try await server.createPoll()
            // One vote held inside the commit, one in the queue: the third is shed.
            let (held, queued) = try await holdOneVoteAndQueueAnother(server, gate: gate, poll: poll)
            let shed = try await server.vote(poll, #"{"voter": "3", "answers": {"q1": ["a"]}}"#)
            #expect(shed.status == .serviceUnavailable)
            #expect(shed.headers[.retryAfter] == "2")
            #expect(shed.errorCode == "overloaded")
            gate.open()
            #expect(try await held.value.hasPrefix("HTTP/1.1 201"))
            #expect(try await queued.value.hasPrefix("HTTP/1.1 201"))
        }
    }

    /// A client that sends its head and then trickles the body is cut off at the deadline.
    @Test func aTricklingClientIsCutOff() async throws {
        var settings = PollwireSettings()
        settings.requestReadTimeout = .milliseconds(300)
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let started = ContinuousClock.now
            let answer = try await rawExchange(
                port: port,
                chunks: [
                    "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + "Content-Length: 100\r\n\r\n{\"voter\":", "\"slow\",",
                ], pause: .milliseconds(100), holdOpenFor: .seconds(3))
            let elapsed = ContinuousClock.now - started
            #expect(answer.closed)
            #expect(elapsed < .seconds(2), "closed after \(elapsed)")
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(results["total"] as? Int == 0)
        }
    }
}

// MARK: Helpers

/// Holds commits until opened; says when a commit is waiting.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var isOpen = false
    private var isWaiting = false

    var waiting: Bool { self.lock.withLock { self.isWaiting } }

    func pass() async {
        await withCheckedContinuation { continuation in
            let go = self.lock.withLock {
                if self.isOpen { return true }
                self.continuation = continuation
                self.isWaiting = true
                return false
            }
            if go { continuation.resume() }
        }
    }

    func open() {
        let continuation = self.lock.withLock {
            self.isOpen = true
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.resume()
    }
}

extension Gate {
    /// The real SQLite vote store behind this gate (for `TestServer.run(voteStore:)`).
    var heldStore: @Sendable (SQLiteDatabase) -> any VoteStore {
        { database in HeldVoteStore(base: SQLiteVoteStore(database: database), gate: self) }
    }
}

/// Votes for voters "1" and "2", each on its own connection: the first is held inside the
/// commit by `gate`, the second waits in the ingest queue behind it.
func holdOneVoteAndQueueAnother(
    _ server: TestServer, gate: Gate, poll: String
) async throws -> (held: Task<String, any Error>, queued: Task<String, any Error>) {
    let port = try #require(server.client.port)
    let held = Task { try await rawVote(port: port, poll: poll, voter: "1") }
    try await waitFor { gate.waiting }
    let queued = Task { try await rawVote(port: port, poll: poll, voter: "2") }
    try await waitFor { server.parts.ingestor.queuedBallots == 1 }
    return (held, queued)
}

/// The real SQLite vote store, with every commit passing the gate first.
struct HeldVoteStore: VoteStore {
    let base: SQLiteVoteStore
    let gate: Gate

    func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        await self.gate.pass()
        return try await self.base.commit(votes, at: now)
    }
}

func waitFor(_ condition: @Sendable () -> Bool) async throws {
    for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    #expect(condition())
}

/// One vote over its own connection; returns the raw response text.
func rawVote(port: Int, poll: String, voter: String) async throws -> String {
    let body = #"{"voter": "\#(voter)", "answers": {"q1": ["a"]}}"#
    let request =
        "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    return try await rawExchange(port: port, chunks: [request], pause: .zero, holdOpenFor: .seconds(10)).text
}

/// Writes `chunks` to a new loopback connection, `pause` apart, then reads until the server
/// closes or `holdOpenFor` passes.
func rawExchange(
    port: Int, chunks: [String], pause: Duration, holdOpenFor: Duration
) async throws -> (text: String, closed: Bool) {
    try await rawBytesExchange(
        port: port, chunks: chunks.map { Array($0.utf8) }, pause: pause, holdOpenFor: holdOpenFor)
}
