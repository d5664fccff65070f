import Foundation
import HTTPTypes
import HummingbirdTesting
import Metrics
import NIOCore
import NIOEmbedded
import Testing

@testable import PollwireHTTP

/// `RequestFraming`: where a request ends and whether it may be refused at the bytes.
@Suite struct RequestFramingTests {
    static func parse(_ text: String) -> RequestFraming? {
        RequestFraming.parse(ByteBuffer(string: text))
    }

    @Test func aVoteIsFramedByItsContentLength() throws {
        let head = "POST /v1/polls/p1/votes HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:  12 \r\n\r\n"
        let framing = try #require(Self.parse(head + #"{"answers":1}"#))
        #expect(framing.headLength == head.utf8.count)
        #expect(framing.contentLength == 12)
        #expect(framing.refusable && !framing.isOwner && !framing.closes)
    }

    @Test func whatDecidesThePoolAndTheConnection() throws {
        let owner = try #require(Self.parse("GET /v1/polls HTTP/1.1\r\nAuthorization: Bearer k\r\n\r\n"))
        #expect(owner.isOwner && owner.refusable && owner.contentLength == 0)
        let closing = try #require(Self.parse("GET /v1/results HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"))
        #expect(closing.closes)
    }

    @Test func whatIsNeverRefusedAtTheBytes() throws {
        for text in [
            "GET /healthz HTTP/1.1\r\n\r\n", "GET /readyz?x=1 HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\n\r\n",
            "HEAD /v1/polls/p/results HTTP/1.1\r\n\r\n", "OPTIONS /v1/polls/p/votes HTTP/1.1\r\n\r\n",
            "GET /v1/polls/p/results HTTP/1.0\r\n\r\n",
            "POST /v1/polls/p/votes HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        ] {
            let framing = try #require(Self.parse(text), "\(text)")
            #expect(!framing.refusable, "\(text)")
        }
        #expect(Self.parse("GET /healthzz HTTP/1.1\r\n\r\n")?.refusable == true)
    }

    /// Framing this does not follow, and heads not whole: the handler steps aside.
    @Test func whatItDoesNotFollowIsLeftToTheDecoder() {
        for text in [
            "POST /v1/votes:batch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v1/live HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
            "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "POST /x HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", "POST /x HTTP/1.1\r\nContent-Length:\r\n\r\n",
            "GET /v1/polls/p/results HTTP/1.1\r\nHost: x\r\n", "GET /v1/polls/p/res", "GET / HTTP/1.1\nHost: x\n\n",
            "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "GET\r\n\r\n",
        ] {
            #expect(Self.parse(text) == nil, "\(text)")
        }
    }

    /// Random bytes and cut-off requests never trap, and a framing never claims more head than given.
    @Test func anyBytesAreSafe() {
        var random = SystemRandomNumberGenerator()
        let sample = Array("POST /v1/polls/p/votes HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".utf8)
        for round in 0..<20_000 {
            var bytes = sample
            if round % 2 == 0 {
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
            } else {
                for _ in 0..<3 {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            if let framing = RequestFraming.parse(ByteBuffer(bytes: bytes)) {
                #expect(framing.headLength <= bytes.count)
            }
        }
    }
}

/// `ByteFrontHandler` over real loopback sockets, with the voters' pool held full.
@Suite struct ByteFrontTests {
    static func fullServer(
        _ body: @Sendable (TestServer, _ poll: String, _ port: Int) async throws -> Void
    ) async throws {
        var settings = PollwireSettings()
        settings.admission.maxInFlight = 2
        let gate = Gate()
        try await TestServer.run(settings: settings, voteStore: gate.heldStore) { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let (first, second) = try await holdOneVoteAndQueueAnother(server, gate: gate, poll: poll)
            try await body(server, poll, port)
            gate.open()
            #expect(try await first.value.hasPrefix("HTTP/1.1 201"))
            #expect(try await second.value.hasPrefix("HTTP/1.1 201"))
            // Places are given back: the next vote is admitted; no refused vote was counted.
            #expect(try await server.vote(poll, #"{"voter": "9", "answers": {"q1": ["a"]}}"#).status == .created)
            let results = try await server.request(.get, "/v1/polls/\(poll)/results")
            #expect(try results.object()["total"] as? Int == 3)
        }
    }

    static func refusedCount(_ server: TestServer) async throws -> Int {
        let text = try await server.request(.get, "/metrics").text
        let line = text.split(separator: "\n").first {
            $0.hasPrefix("pollwire_admission_refused_total") && $0.contains(#"pool="voters""#)
        }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }

    static func statuses(_ text: String) -> [String] {
        text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
    }

    /// Pipelined in one write: the first two are refused at the bytes, in order; health goes on
    /// and is answered; the request behind it is admitted (as `AdmissionHandler` admits a
    /// pipelined request behind one being answered) and its `Connection: close` is honoured.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await Self.fullServer { server, poll, port in
            let before = try await Self.refusedCount(server)
            let body = #"{"voter": "5", "answers": {"q1": ["a"]}}"#
            let requests =
                "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let (text, closed) = try await rawExchange(
                port: port, chunks: [requests], pause: .zero, holdOpenFor: .seconds(10))
            #expect(Self.statuses(text) == ["503", "503", "200", "200"], "\(text)")
            #expect(closed)
            #expect(text.lowercased().contains("retry-after: "))
            #expect(text.contains(#""code":"overloaded""#))
            #expect(try await Self.refusedCount(server) == before + 2)
        }
    }

    /// A refusal asked to close the connection closes it (`rawVote` reads to the close).
    @Test func aRefusalWithConnectionCloseCloses() async throws {
        try await Self.fullServer { _, poll, port in
            let started = ContinuousClock.now
            let text = try await rawVote(port: port, poll: poll, voter: "6")
            #expect(text.hasPrefix("HTTP/1.1 503"), "\(text)")
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    /// A head that arrives in two reads is not followed at the bytes: `AdmissionHandler`
    /// refuses it as before, and the connection keeps working.
    @Test func aHeadSplitAcrossReadsIsRefusedAfterTheDecoder() async throws {
        try await Self.fullServer { server, poll, port in
            let (text, closed) = try await rawExchange(
                port: port,
                chunks: [
                    "GET /v1/polls/\(poll)/res", "ults HTTP/1.1\r\nHost: x\r\n\r\n",
                    "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                ], pause: .milliseconds(100), holdOpenFor: .seconds(10))
            #expect(Self.statuses(text) == ["503", "503"], "\(text)")
            #expect(closed)
        }
    }

    /// The bytes of a refusal are the same response `AdmissionHandler` sends.
    @Test func bothRefusalsAreTheSameResponse() async throws {
        try await Self.fullServer { server, poll, port in
            let early = try await rawResponse(
                port: port, "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            // Behind a split head the decoder's path answers.
            let (late, _) = try await rawExchange(
                port: port,
                chunks: ["GET /v1/polls/\(poll)/results HTTP/1.1\r\n", "Host: x\r\nConnection: close\r\n\r\n"],
                pause: .milliseconds(100), holdOpenFor: .seconds(10))
            #expect(early.status == 503)
            let earlyText =
                "HTTP/1.1 503 Service Unavailable\r\n"
                + early.headers.keys.sorted().map { "\($0): \(early.headers[$0]!)" }.joined(separator: "\n")
            let lateHeaders = late.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
            let lateText =
                lateHeaders[0] + "\r\n"
                + lateHeaders.dropFirst().map { line -> String in
                    let colon = line.firstIndex(of: ":")!
                    return
                        "\(line[..<colon].lowercased()): \(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))"
                }.filter { !$0.hasPrefix("connection:") }.sorted().joined(separator: "\n")
            #expect(earlyText == lateText)
            #expect(late.hasSuffix(String(decoding: early.body, as: UTF8.self)))
        }
    }
}

/// `ByteFrontHandler` alone in an `EmbeddedChannel`: what it answers itself, what it sends on.
@Suite struct ByteFrontHandlerTests {
    static let vote = "POST /v1/polls/p/votes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    static let read = "GET /v1/polls/p/results HTTP/1.1\r\nHost: x\r\n\r\n"

    struct Harness {
        let channel = EmbeddedChannel()
        let admission: Admission
        let ledger = RequestLedger()

        init(full: Bool) throws {
            var settings = AdmissionSettings()
            settings.maxInFlight = 1
            self.admission = Admission(settings: settings, securityHeaders: [:], factory: NOOPMetricsHandler.instance)
            if full { self.admission.voters.enter() }
            try self.channel.pipeline.syncOperations.addHandler(
                ByteFrontHandler(admission: self.admission, ledger: self.ledger))
        }

        func send(_ text: String) throws {
            try self.channel.writeInbound(ByteBuffer(string: text))
        }

        /// Everything sent on, joined.
        func forwarded() throws -> String {
            var text = ""
            while let buffer = try self.channel.readInbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        /// How many refusals were written.
        func refusals() throws -> Int {
            var count = 0
            while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
                #expect(buffer == self.admission.http1Refusal)
                count += 1
            }
            return count
        }
    }

    @Test func aFullPoolRefusesWholeRequestsWithoutSendingThemOn() throws {
        let harness = try Harness(full: true)
        try harness.send(Self.vote + Self.read)
        #expect(try harness.refusals() == 2)
        #expect(try harness.forwarded() == "")
        #expect(harness.ledger.passed == 0)
    }

    @Test func withRoomEverythingGoesOnAndIsCounted() throws {
        let harness = try Harness(full: false)
        try harness.send(Self.vote + Self.read)
        #expect(try harness.forwarded() == Self.vote + Self.read)
        #expect(try harness.refusals() == 0)
        #expect(harness.ledger.passed == 2)
    }

    /// A request behind one still being answered goes on: the refusal would overtake its answer.
    @Test func nothingIsRefusedWhileAnEarlierRequestIsAnswered() throws {
        let harness = try Harness(full: false)
        try harness.send(Self.read)
        #expect(try harness.forwarded() == Self.read)
        harness.admission.voters.enter()
        try harness.send(Self.vote)
        #expect(try harness.forwarded() == Self.vote)
        #expect(try harness.refusals() == 0)
        harness.ledger.answered = 2
        try harness.send(Self.read)
        #expect(try harness.refusals() == 1)
        #expect(try harness.forwarded() == "")
    }

    /// A body that spans reads goes on to its end; the request after it is refused.
    @Test func theRestOfABodyGoesOnBeforeTheNextRequestIsRefused() throws {
        let harness = try Harness(full: false)
        let split = Self.vote.index(Self.vote.endIndex, offsetBy: -3)
        try harness.send(String(Self.vote[..<split]))
        #expect(try harness.forwarded() == String(Self.vote[..<split]))
        harness.admission.voters.enter()
        harness.ledger.answered = 1
        try harness.send(String(Self.vote[split...]) + Self.read)
        #expect(try harness.forwarded() == String(Self.vote[split...]))
        #expect(try harness.refusals() == 1)
    }

    /// Once a head spans reads, the handler steps aside for good.
    @Test func aSplitHeadMakesItStepAside() throws {
        let harness = try Harness(full: true)
        try harness.send("GET /v1/polls/p/res")
        try harness.send("ults HTTP/1.1\r\n\r\n" + Self.read)
        #expect(try harness.forwarded() == "GET /v1/polls/p/results HTTP/1.1\r\n\r\n" + Self.read)
        #expect(try harness.refusals() == 0)
    }

    @Test func aRefusalAskedToCloseCloses() throws {
        let harness = try Harness(full: true)
        try harness.send("GET /v1/polls/p/results HTTP/1.1\r\nConnection: close\r\n\r\n" + Self.read)
        #expect(try harness.refusals() == 1)
        #expect(try harness.forwarded() == "")
        #expect(!harness.channel.isActive)
    }
}

/// Plain results reads answered at the bytes (`ByteFrontHandler`): the same answer as the event-loop
/// fast path and the router, current at every version and definition edit, counted in the metrics.
@Suite struct ByteFrontReadTests {
    static func read(_ port: Int, _ path: String, _ headers: String = "") async throws -> FastPathTests.RawResponse {
        try await FastPathTests.pipeline(port: port, [FastPathTests.get(path, headers)])[0]
    }

    @Test func aPlainReadIsAnsweredAsTheFastPathAndTheRouterAnswer() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "b1", "answers": {"q1": ["a"]}}"#)
            let path = "/v1/polls/\(poll)/results"
            let bytes = try await Self.read(port, path)
            // Accept-Encoding sends it on to FastPathHandler; a query string to the router.
            let fast = try await Self.read(port, path, "Accept-Encoding: identity\r\n")
            let routed = try await Self.read(port, path + "?via=router")
            #expect(bytes.status == 200)
            #expect(bytes.comparable == fast.comparable)
            #expect(bytes.comparable == routed.comparable)
            #expect(bytes.body == routed.body)
            #expect(bytes.header("Content-Length") == String(bytes.body.count))
            #expect(bytes.header("Date")?.hasSuffix(" GMT") == true)
        }
    }

    @Test func eachReadIsCurrentAcrossVotesAndDefinitionEdits() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            let path = "/v1/polls/\(poll)/results"
            let before = try await Self.read(port, path)
            #expect(before.header("ETag") == #"W/"\#(poll)-0""#)
            _ = try await server.vote(poll, #"{"voter": "b2", "answers": {"q1": ["b"]}}"#)
            let after = try await Self.read(port, path)
            #expect(after.header("ETag") == #"W/"\#(poll)-1""#)
            let total = try JSONSerialization.jsonObject(with: Data(after.body)) as? [String: Any]
            #expect(total?["total"] as? Int == 1)
            let edit = try await server.request(
                .patch, "/v1/polls/\(poll)",
                json: #"{"settings": {"cache": {"maxAge": 7, "sharedMaxAge": 8, "staleWhileRevalidate": 9}}}"#,
                auth: true)
            #expect(edit.status == .ok, "\(String(buffer: edit.body))")
            let edited = try await Self.read(port, path)
            #expect(edited.header("Cache-Control") == "public, max-age=7, s-maxage=8, stale-while-revalidate=9")
            #expect(try await Self.read(port, "/v1/polls/nope/results").status == 404)
        }
    }

    @Test func aPlainReadAskedToCloseIsAnsweredThenClosed() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            let (text, closed) = try await rawExchange(
                port: port,
                chunks: ["GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
                pause: .zero, holdOpenFor: .seconds(10))
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(text.hasSuffix(#""version":0}"#))
            #expect(closed)
        }
    }

    @Test func plainReadsAreCountedInTheRouteMetrics() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            let labels = [#"method="GET""#, #"route="/v1/polls/{id}/results""#, #"status="200""#]
            func count() async throws -> Int {
                let text = try await server.request(.get, "/metrics").text
                let found = text.split(separator: "\n").first { line in
                    line.hasPrefix("pollwire_http_requests_total{") && labels.allSatisfy { line.contains($0) }
                }
                return found.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
            }
            let before = try await count()
            for _ in 0..<3 { _ = try await Self.read(port, "/v1/polls/\(poll)/results") }
            #expect(try await count() == before + 3)
        }
    }
}
