import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import PollwireEngine
import PollwireHTTP
import Synchronization
import Testing

/// A raw SSE client on its own loopback connection: collects what arrives and parses events.
final class SSEClient: Sendable {
    struct Event {
        /// The version the event carries.
        var id: Int64
        /// The whole `id:` line: `<version>`, or `<version>-h` for hidden results.
        var eventID: String
        var total: Int?
        var hidden: Bool?
        var poll: String?
        var hasQuestions: Bool
    }

    let received = Mutex<String>("")
    /// The same, as bytes (for binary WebSocket frames).
    let receivedBytes = Mutex<ByteBuffer>(ByteBuffer())
    let closed = Atomic<Bool>(false)
    let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// A raw WebSocket viewer of `polls`: the upgrade request and a subscribe message, masked
    /// with a zero key (RFC 6455 allows any key).
    static func connectWebSocket(
        port: Int, polls: [String], receiveBuffer: Int? = nil, autoRead: Bool = true,
        headers extra: [String: String] = [:]
    ) async throws -> SSEClient {
        let subscribe = Array(
            "{\"type\":\"subscribe\",\"polls\":[\(polls.map { "\"\($0)\"" }.joined(separator: ","))]}".utf8)
        var frame = ByteBuffer()
        frame.writeInteger(UInt8(0x81))
        frame.writeInteger(UInt8(0x80 | subscribe.count))
        frame.writeInteger(UInt32(0))
        frame.writeBytes(subscribe)
        return try await Self.connect(
            port: port, path: "/v1/live",
            headers: [
                "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            ].merging(extra) { $1 }, receiveBuffer: receiveBuffer, autoRead: autoRead, after: frame)
    }

    static func connect(
        port: Int, path: String, headers: [String: String] = [:], receiveBuffer: Int? = nil, autoRead: Bool = true,
        after trailer: ByteBuffer? = nil
    ) async throws -> SSEClient {
        let box = Mutex<SSEClient?>(nil)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: .init(receiveBuffer))
        }
        let channel = try await bootstrap.channelOption(.autoRead, value: autoRead)
            .channelInitializer { channel in
                channel.pipeline.addHandler(Collector(box: { box.withLock { $0 } }))
            }
            .connect(host: "127.0.0.1", port: port).get()
        let client = SSEClient(channel: channel)
        box.withLock { $0 = client }
        var request = "GET \(path) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        var bytes = ByteBuffer(string: request + "\r\n")
        if var trailer { bytes.writeBuffer(&trailer) }
        try await channel.writeAndFlush(bytes)
        return client
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let box: @Sendable () -> SSEClient?
        init(box: @escaping @Sendable () -> SSEClient?) { self.box = box }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = self.unwrapInboundIn(data)
            let text = String(buffer: buffer)
            self.box()?.received.withLock { $0 += text }
            _ = self.box()?.receivedBytes.withLock { $0.writeBuffer(&buffer) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.box()?.closed.store(true, ordering: .sequentiallyConsistent)
        }
    }

    var text: String { self.received.withLock { $0 } }

    var isClosed: Bool { self.closed.load(ordering: .sequentiallyConsistent) }

    /// The results events received so far, in order.
    var events: [Event] {
        let text = self.text
        var events: [Event] = []
        var rest = text[...]
        while let start = rest.range(of: "id: ") {
            rest = rest[start.upperBound...]
            guard let newline = rest.firstIndex(of: "\n"),
                let id = Int64(rest[..<newline].prefix { $0.isNumber }),
                let data = rest.range(of: "data: "),
                let end = rest.range(of: "\n\n", range: data.upperBound..<rest.endIndex)
            else { break }
            let json = rest[data.upperBound..<end.lowerBound]
            if let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] {
                events.append(
                    Event(
                        id: id, eventID: String(rest[..<newline]), total: object["total"] as? Int,
                        hidden: object["hidden"] as? Bool,
                        poll: object["poll"] as? String, hasQuestions: object["questions"] != nil))
            }
            rest = rest[end.upperBound...]
        }
        return events
    }

    /// Waits until `condition` holds for the events, at most `timeout`.
    func waitFor(_ timeout: Duration = .seconds(5), _ condition: ([Event]) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(self.events) { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition(self.events)
    }

    func close() async {
        try? await self.channel.close()
    }
}

@Suite struct LiveSSETests {
    @Test func streamsTheCurrentResultsThenEachNewVersion() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            let port = try #require(server.client.port)
            let viewer = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            #expect(try await viewer.waitFor { $0.map(\.id) == [1] }, "\(viewer.text)")
            #expect(viewer.text.contains("text/event-stream"))
            #expect(viewer.text.contains("retry: "))
            let sent = ContinuousClock.now
            _ = try await server.vote(poll, #"{"voter": "2", "answers": {"q1": ["b"]}}"#)
            #expect(try await viewer.waitFor { $0.last?.id == 2 })
            #expect(ContinuousClock.now - sent < .seconds(1))
            #expect(viewer.events.last?.total == 2)
            #expect(viewer.events.last?.poll == poll)
            await viewer.close()
        }
    }

    /// A viewer that goes away is unsubscribed when its side closes, on a quiet poll too: not when
    /// a write fails, which on a poll with no votes is the next heartbeat (15 s).
    @Test(arguments: ["sse", "ws"])
    func aViewerThatLeavesIsUnsubscribedAtOnce(transport: String) async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let viewer =
                transport == "sse"
                ? try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
                : try await SSEClient.connectWebSocket(port: port, polls: [poll])
            for _ in 0..<300 where server.parts.hub.subscriberCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(server.parts.hub.subscriberCount == 1)
            await viewer.close()
            for _ in 0..<300 where server.parts.hub.subscriberCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(server.parts.hub.subscriberCount == 0, "still subscribed 3 s after the viewer left")
        }
    }

    @Test func lastEventIDResumes() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            _ = try await server.vote(poll, #"{"voter": "2", "answers": {"q1": ["a"]}}"#)
            let port = try #require(server.client.port)
            let behind = try await SSEClient.connect(
                port: port, path: "/v1/polls/\(poll)/live", headers: ["Last-Event-ID": "1"])
            #expect(try await behind.waitFor { $0.map(\.id) == [2] })
            let current = try await SSEClient.connect(
                port: port, path: "/v1/polls/\(poll)/live", headers: ["Last-Event-ID": "2"])
            // A viewer at the current version gets nothing until it moves: its first event is 3.
            _ = try await server.vote(poll, #"{"voter": "3", "answers": {"q1": ["b"]}}"#)
            #expect(try await current.waitFor { !$0.isEmpty })
            #expect(current.events.map(\.id) == [3])
            await behind.close()
            await current.close()
        }
    }

    @Test func hiddenPollsStreamOnlyTheCountUntilRevealed() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "hidden_until_reveal"}"#))
            let port = try #require(server.client.port)
            let viewer = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            #expect(try await viewer.waitFor { $0.last?.id == 1 })
            #expect(viewer.events.allSatisfy { $0.hidden == true && !$0.hasQuestions })
            _ = try await server.request(.post, "/v1/polls/\(poll)/reveal", auth: true)
            #expect(try await viewer.waitFor { $0.last?.hidden == false })
            #expect(viewer.events.last?.id == 1)
            await viewer.close()
        }
    }

    /// A viewer that never reads is closed after the stuck deadline (SSE and WebSocket alike);
    /// a viewer that reads keeps getting every update on time; the slow one never holds more
    /// than one pending update.
    @Test(arguments: ["sse", "ws"])
    func aViewerThatNeverReadsIsClosedAndTheOthersStayOnTime(transport: String) async throws {
        var settings = PollwireSettings()
        settings.live = Hub.Configuration(publishInterval: .milliseconds(20), stuckDeadline: .milliseconds(500))
        settings.latestTextLimit = 10
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll(
                """
                {"title": "Big", "questions": [{"id": "t", "kind": "text", "prompt": "?", "maxLength": 10000}],
                 "settings": {"dedupe": "none"}}
                """)
            let port = try #require(server.client.port)
            let slow =
                transport == "ws"
                ? try await SSEClient.connectWebSocket(port: port, polls: [poll], receiveBuffer: 1024, autoRead: false)
                : try await SSEClient.connect(
                    port: port, path: "/v1/polls/\(poll)/live", receiveBuffer: 1024, autoRead: false)
            let fast = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            // ~100 KB per update (10 latest answers of 10 KB), an update every 20 ms.
            let answer = String(repeating: "x", count: 9_999)
            var version = 0
            let started = ContinuousClock.now
            for _ in 0..<200 where server.parts.hub.subscriberCount < 2 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(server.parts.hub.subscriberCount == 2)
            // The slow viewer never reads, so only the server can tell it was dropped.
            while ContinuousClock.now - started < .seconds(8), server.parts.hub.subscriberCount == 2 {
                let response = try await server.vote(poll, #"{"answers": {"t": "\#(answer)"}}"#)
                version = try response.object()["version"] as! Int
                try await Task.sleep(for: .milliseconds(20))
            }
            let dropped = ContinuousClock.now - started
            #expect(server.parts.hub.subscriberCount == 1, "the stuck viewer was not closed")
            #expect(dropped < .seconds(5), "dropped after \(dropped)")
            #expect(try await fast.waitFor(.seconds(2)) { $0.last?.id == Int64(version) })
            // Reading now, the slow viewer finds its connection closed by the server.
            try await slow.channel.setOption(.autoRead, value: true).get()
            for _ in 0..<500 where !slow.isClosed { try await Task.sleep(for: .milliseconds(10)) }
            #expect(slow.isClosed)
            let metrics = try await server.request(.get, "/metrics").text
            #expect(metrics.contains("pollwire_live_slow_disconnects_total 1"))
            await fast.close()
        }
    }

    @Test func aLiveRequestForAnUnknownPollGetsTheJSONError() async throws {
        try await TestServer.run { server in
            let response = try await server.request(.get, "/v1/polls/nope/live")
            #expect(response.status == .notFound)
            #expect(response.errorCode == "not_found")
        }
    }

    /// A keep-alive connection that served an ordinary request can become a live stream.
    @Test func aLiveStreamAfterAnOrdinaryRequestOnOneConnection() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let viewer = try await SSEClient.connect(port: port, path: "/healthz")
            for _ in 0..<200 where !viewer.text.contains("\"status\":\"ok\"") {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await viewer.channel.writeAndFlush(
                ByteBuffer(string: "GET /v1/polls/\(poll)/live HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(try await viewer.waitFor { $0.map(\.id) == [0] })
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            #expect(try await viewer.waitFor { $0.last?.id == 1 })
            await viewer.close()
        }
    }

    /// A connection that never sends a request is closed after the idle timeout.
    @Test func aSilentConnectionIsClosed() async throws {
        var settings = PollwireSettings()
        settings.idleTimeout = .milliseconds(300)
        try await TestServer.run(settings: settings) { server in
            let port = try #require(server.client.port)
            let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            // Closed after 300 ms; waited for up to 10 s, so a busy machine's late timer passes.
            let deadline = ContinuousClock.now + .seconds(10)
            try await Task.sleep(for: .milliseconds(300))
            while silent.isActive, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!silent.isActive)
            try? await silent.close()
        }
    }

    /// Open live viewers (SSE, WebSocket, and a connection that sent nothing) do not hold up
    /// a graceful shutdown; the SSE stream ends cleanly and the WebSocket gets its close frame.
    @Test(.timeLimit(.minutes(1))) func liveViewersDoNotHoldUpShutdown() async throws {
        let viewers = Mutex<[SSEClient]>([])
        let started = Mutex<ContinuousClock.Instant?>(nil)
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let sse = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            let ws = try await SSEClient.connectWebSocket(port: port, polls: [poll])
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            #expect(try await sse.waitFor { !$0.isEmpty })
            for _ in 0..<200 where server.parts.hub.subscriberCount < 2 { try await Task.sleep(for: .milliseconds(10)) }
            viewers.withLock { $0 = [sse, ws] }
            started.withLock { $0 = .now }
        }
        let elapsed = ContinuousClock.now - started.withLock { $0! }
        #expect(elapsed < .seconds(5), "shutdown took \(elapsed)")
        let (sse, ws) = viewers.withLock { ($0[0], $0[1]) }
        for _ in 0..<200 where !(sse.isClosed && ws.isClosed) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(sse.isClosed)
        #expect(sse.text.hasSuffix("0\r\n\r\n"), "the SSE stream ends with the last chunk")
        #expect(ws.isClosed)
        // The close frame (1001, going away) carries its reason.
        #expect(ws.text.contains("the server is shutting down"))
    }
}
