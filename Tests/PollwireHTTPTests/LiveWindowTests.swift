import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOWebSocket
import PollwireCore
import PollwireEngine
import PollwireHTTP
import Testing

extension SSEClient {
    /// The `window` events received so far, in order, as JSON objects.
    var windowEvents: [[String: Any]] {
        var events: [[String: Any]] = []
        var rest = self.text[...]
        while let start = rest.range(of: "event: window\ndata: "),
            let end = rest.range(of: "\n\n", range: start.upperBound..<rest.endIndex)
        {
            if let object = try? JSONSerialization.jsonObject(with: Data(rest[start.upperBound..<end.lowerBound].utf8))
                as? [String: Any]
            {
                events.append(object)
            }
            rest = rest[end.upperBound...]
        }
        return events
    }
}

/// Live `window` events (`WindowFeed`) over real sockets: sent when a window ends to the
/// viewers that asked for that width, with the window's counts; a correction when a ballot
/// with an earlier `castAt` lands in a window already sent; ballot counts only while the
/// results are hidden; widths that are not served refused with the field named.
@Suite struct LiveWindowTests {
    static func second(_ text: Any?) -> Int64? {
        (text as? String).flatMap(PollwireJSON.date).map { Int64($0.timeIntervalSince1970) }
    }

    @Test func aWindowEventWhenTheWindowEndsAndACorrectionWhenALateBallotLandsInIt() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let viewer = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live?windows=1s")
            #expect(try await viewer.waitFor { !$0.isEmpty })
            for voter in 0..<3 {
                #expect(
                    try await server.vote(poll, #"{"voter": "v\#(voter)", "answers": {"q1": ["a"]}}"#).status
                        == .created)
            }
            // The windows the votes landed in are sent once they have ended (a loaded machine may
            // spread the three votes over two seconds): every vote in exactly one of them.
            var sent: [[String: Any]] = []
            #expect(
                try await viewer.waitFor(.seconds(5)) { _ in
                    sent = viewer.windowEvents.filter { ($0["ballots"] as? Int ?? 0) > 0 }
                    return sent.reduce(0) { $0 + ($1["ballots"] as! Int) } >= 3
                })
            #expect(sent.reduce(0) { $0 + ($1["ballots"] as! Int) } == 3)
            let window = try #require(sent.first)
            #expect(window["type"] as? String == "window" && window["poll"] as? String == poll)
            #expect(window["window"] as? String == "1s" && window["correction"] as? Bool == false)
            #expect(window["final"] as? Bool == false, "within the default 60 s of lateness")
            let start = try #require(Self.second(window["start"]))
            #expect(Self.second(window["end"]) == start + 1)
            let ballots = try #require(window["ballots"] as? Int)
            #expect((window["counts"] as? [String: [String: Int]])?["q1"]?["a"] == ballots, "\(window)")
            #expect(window["momentum"] is [String: Any])

            // A batch ballot cast in that second arrives now: the window is sent again, corrected.
            let castAt = Date(timeIntervalSince1970: Double(start) + 0.5).formatted(
                Date.ISO8601FormatStyle(includingFractionalSeconds: true))
            let batch = try await server.request(
                .post, "/v1/votes:batch",
                json:
                    #"{"ballots": [{"poll": "\#(poll)", "voter": "edge", "castAt": "\#(castAt)", "answers": {"q1": ["b"]}}]}"#,
                auth: true)
            #expect(batch.status == .ok, "\(batch.text)")
            var corrected: [String: Any]?
            #expect(
                try await viewer.waitFor(.seconds(4)) { _ in
                    corrected = viewer.windowEvents.first { $0["correction"] as? Bool == true }
                    return corrected != nil
                })
            let correction = try #require(corrected)
            #expect(Self.second(correction["start"]) == start)
            #expect(correction["ballots"] as? Int == ballots + 1, "\(correction)")
            #expect((correction["counts"] as? [String: [String: Int]])?["q1"] == ["a": ballots, "b": 1])
            // Results events still flow on the same stream, with their ids.
            #expect(viewer.events.last?.total == 4)
            await viewer.close()
            #expect(server.parts.windows.topicCount <= 1)
        }
    }

    @Test func webSocketViewersAskForWindowsOnSubscribe() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let hidden = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "hidden_until_reveal"}"#))
            let port = try #require(server.client.port)
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live", logger: Logger(label: "ws")) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(poll)"], "windows": "7s"}"#))
                let refused = try await LiveWebSocketTests.read(&messages) { $0["type"] as? String == "error" }
                #expect((refused?["error"] as? [String: Any])?["code"] as? String == "invalid_field")
                try await outbound.write(
                    .text(#"{"type": "subscribe", "polls": ["\#(poll)", "\#(hidden)"], "windows": "1s"}"#))
                for (id, voter) in [(poll, "v1"), (hidden, "v2")] {
                    _ = try await server.vote(id, #"{"voter": "\#(voter)", "answers": {"q1": ["a"]}}"#)
                }
                var seen: [String: [String: Any]] = [:]
                let deadline = ContinuousClock.now + .seconds(4)
                while seen.count < 2, ContinuousClock.now < deadline {
                    guard
                        let window = try await LiveWebSocketTests.read(
                            &messages,
                            until: {
                                $0["type"] as? String == "window" && ($0["ballots"] as? Int ?? 0) > 0
                            })
                    else { break }
                    seen[window["poll"] as! String] = window
                }
                #expect(seen[poll]?["counts"] as? [String: [String: Int]] == ["q1": ["a": 1]])
                // Hidden results: the window's ballots only.
                #expect(seen[hidden]?["ballots"] as? Int == 1)
                #expect(seen[hidden]?["counts"] == nil && seen[hidden]?["momentum"] == nil)
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
    }

    @Test func aWidthThatIsNotServedIsRefused() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let response = try await server.request(.get, "/v1/polls/\(poll)/live?windows=7s")
            #expect(response.status == .unprocessableContent)
            #expect(response.errorField == "windows")
        }
    }
}
