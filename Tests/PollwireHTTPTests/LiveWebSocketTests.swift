import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import PollwireEngine
import Testing

@Suite(.timeLimit(.minutes(1))) struct LiveWebSocketTests {
    /// Reads messages until one satisfies `match`, at most `timeout`; returns it parsed.
    static func read(
        _ iterator: inout WebSocketInboundMessageStream.AsyncIterator, timeout: Duration = .seconds(5),
        until match: ([String: Any]) -> Bool
    ) async throws -> [String: Any]? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let message = try await iterator.next() else { return nil }
            guard case .text(let text) = message,
                let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            else { continue }
            if match(object) { return object }
        }
        return nil
    }

    @Test func manyPollsOnOneSocketWithVisibilityRules() async throws {
        try await TestServer.run { server in
            let open = try await server.createPoll()
            let hidden = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "hidden_until_reveal"}"#))
            let port = try #require(server.client.port)
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live", logger: Logger(label: "ws")) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(open)", "\#(hidden)", "nope"]}"#))
                let ack = try await Self.read(&messages) { $0["type"] as? String == "subscribed" }
                #expect(ack?["polls"] as? [String] == [open, hidden])
                #expect(ack?["missing"] as? [String] == ["nope"])

                _ = try await server.vote(open, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
                let update = try await Self.read(&messages) {
                    $0["poll"] as? String == open && $0["version"] as? Int == 1
                }
                #expect(update?["total"] as? Int == 1)
                #expect(update?["questions"] != nil)

                _ = try await server.vote(hidden, #"{"voter": "1", "answers": {"q1": ["b"]}}"#)
                let secret = try await Self.read(&messages) {
                    $0["poll"] as? String == hidden && $0["version"] as? Int == 1
                }
                #expect(secret?["hidden"] as? Bool == true)
                #expect(secret?["total"] as? Int == 1)
                #expect(secret?["questions"] == nil)

                _ = try await server.request(.post, "/v1/polls/\(hidden)/reveal", auth: true)
                let revealed = try await Self.read(&messages) {
                    $0["poll"] as? String == hidden && $0["hidden"] as? Bool == false
                }
                #expect(revealed?["questions"] != nil)

                try await outbound.write(.text(#"{"type": "unsubscribe", "polls": ["\#(open)"]}"#))
                let unsubscribed = try await Self.read(&messages) { $0["type"] as? String == "unsubscribed" }
                #expect(unsubscribed?["polls"] as? [String] == [open])
                _ = try await server.vote(open, #"{"voter": "2", "answers": {"q1": ["a"]}}"#)
                _ = try await server.vote(hidden, #"{"voter": "2", "answers": {"q1": ["a"]}}"#)
                let next = try await Self.read(&messages) { $0["version"] as? Int == 2 }
                #expect(next?["poll"] as? String == hidden, "updates of an unsubscribed poll must stop")

                try await outbound.write(.text("not json"))
                let error = try await Self.read(&messages) { $0["type"] as? String == "error" }
                #expect((error?["error"] as? [String: Any])?["code"] as? String == "invalid_json")
                try await outbound.close(.normalClosure, reason: nil)
            }
            let metrics = try await server.request(.get, "/metrics").text
            #expect(metrics.contains(#"pollwire_live_deliveries_total{transport="websocket"}"#))
        }
    }

    /// `format=counts`: a poll's full results once on subscribe, then version and counts only;
    /// hidden results stay hidden; a resubscribe starts with the full results again.
    @Test func compactFramesCarryTheVersionAndTheCounts() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let hidden = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "hidden_until_reveal"}"#))
            let port = try #require(server.client.port)
            let url = "ws://127.0.0.1:\(port)/v1/live?format=counts"
            try await WebSocketClient.connect(url: url, logger: Logger(label: "ws")) { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(poll)", "\#(hidden)"]}"#))
                let first = try await Self.read(&messages) { $0["poll"] as? String == poll }
                #expect(first?["questions"] != nil, "the first frame is the full results")
                _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
                let update = try await Self.read(&messages) {
                    $0["poll"] as? String == poll && $0["version"] as? Int == 1
                }
                #expect(update?["questions"] == nil)
                #expect(update?["total"] as? Int == 1)
                #expect((update?["counts"] as? [String: [String: Int]]) == ["q1": ["a": 1, "b": 0]])
                _ = try await server.vote(hidden, #"{"voter": "1", "answers": {"q1": ["b"]}}"#)
                let secret = try await Self.read(&messages) {
                    $0["poll"] as? String == hidden && $0["version"] as? Int == 1
                }
                #expect(secret?["hidden"] as? Bool == true)
                #expect(secret?["counts"] == nil && secret?["questions"] == nil)
                try await outbound.write(.text(#"{"type": "unsubscribe", "polls": ["\#(poll)"]}"#))
                _ = try await Self.read(&messages) { $0["type"] as? String == "unsubscribed" }
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(poll)"]}"#))
                let again = try await Self.read(&messages) { $0["poll"] as? String == poll }
                #expect(again?["questions"] != nil, "a resubscribe starts from the full results")
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
    }

    @Test func anUnknownFormatIsRefused() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let request =
                "GET /v1/live?format=bogus HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            let (text, _) = try await rawExchange(port: port, chunks: [request], pause: .zero, holdOpenFor: .seconds(5))
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(text)")
            #expect(text.contains(#""code":"bad_request""#), "\(text)")
        }
    }
}
