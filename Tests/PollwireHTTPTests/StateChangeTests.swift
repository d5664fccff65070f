import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOWebSocket
import PollwireHTTP
import Testing

/// State changes that change what a viewer may see reach live viewers at once, also without a
/// vote (a scheduled close), and a viewer that resumes after one gets what it may now see.
@Suite(.timeLimit(.minutes(1))) struct StateChangeTests {
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// An `after_close` poll that closes by itself (`closesAt`): its SSE and WebSocket viewers
    /// get the full results when the moment passes, with no request from anyone.
    @Test func aScheduledCloseShowsTheResultsToLiveViewers() async throws {
        try await TestServer.run { server in
            // Time to connect both viewers before the close, also on a loaded machine.
            let closesAt = Date().addingTimeInterval(4)
            let poll = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "after_close"}"#)
                    .replacingOccurrences(
                        of: #""settings""#, with: #""closesAt": "\#(Self.iso(closesAt))", "settings""#))
            let port = try #require(server.client.port)
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            let viewer = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            #expect(try await viewer.waitFor { $0.last?.eventID == "1-h" })
            #expect(viewer.events.allSatisfy { $0.hidden == true })
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live", logger: Logger(label: "ws")) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(poll)"]}"#))
                let first = try await LiveWebSocketTests.read(&messages) { $0["poll"] as? String == poll }
                #expect(first?["hidden"] as? Bool == true)
                let shown = try await LiveWebSocketTests.read(&messages) {
                    $0["poll"] as? String == poll && $0["hidden"] as? Bool == false
                }
                #expect(shown?["questions"] != nil)
                // Within a second of the close (one publish tick is 50 ms).
                #expect(Date().timeIntervalSince(closesAt) < 1, "shown \(Date().timeIntervalSince(closesAt)) s after")
                try await outbound.close(.normalClosure, reason: nil)
            }
            #expect(try await viewer.waitFor { $0.last?.eventID == "1" && $0.last?.hasQuestions == true })
            let vote = try await server.vote(poll, #"{"voter": "2", "answers": {"q1": ["a"]}}"#)
            #expect(vote.errorCode == "poll_not_open")
            await viewer.close()
        }
    }

    /// A viewer that saw hidden results and resumes (`Last-Event-ID`) after a reveal gets the
    /// results at once, at the same version; one that resumes with what is current gets nothing
    /// until the next change.
    @Test(arguments: ["reveal", "close"])
    func aViewerResumingAfterARevealOrCloseGetsTheResults(change: String) async throws {
        try await TestServer.run { server in
            let visibility = change == "reveal" ? "hidden_until_reveal" : "after_close"
            let poll = try await server.createPoll(
                TestServer.lunch(settings: #"{"visibility": "\#(visibility)", "allowChange": true}"#))
            let port = try #require(server.client.port)
            _ = try await server.vote(poll, #"{"voter": "1", "answers": {"q1": ["a"]}}"#)
            let before = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            #expect(try await before.waitFor { $0.last?.eventID == "1-h" })
            await before.close()

            let changed = try await server.request(.post, "/v1/polls/\(poll)/\(change)", auth: true)
            #expect(changed.status == .ok)
            let resumed = try await SSEClient.connect(
                port: port, path: "/v1/polls/\(poll)/live", headers: ["Last-Event-ID": "1-h"])
            #expect(try await resumed.waitFor { $0.first?.eventID == "1" })
            #expect(resumed.events.first?.hasQuestions == true)
            await resumed.close()

            let current = try await SSEClient.connect(
                port: port, path: "/v1/polls/\(poll)/live", headers: ["Last-Event-ID": "1"])
            // The next event it gets is the next change, not the version it already has.
            if change == "reveal" {
                _ = try await server.vote(poll, #"{"voter": "2", "answers": {"q1": ["b"]}}"#)
                #expect(try await current.waitFor { !$0.isEmpty })
                #expect(current.events.map(\.eventID) == ["2"])
            } else {
                _ = try await server.request(.post, "/v1/polls/\(poll)/open", auth: true)
                #expect(try await current.waitFor { !$0.isEmpty })
                #expect(current.events.map(\.eventID) == ["1-h"], "reopened: hidden again")
            }
            await current.close()

            // WebSocket viewers get what they may see at once on subscribe.
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live", logger: Logger(label: "ws")) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(poll)"]}"#))
                let first = try await LiveWebSocketTests.read(&messages) { $0["poll"] as? String == poll }
                #expect((first?["hidden"] as? Bool) == (change == "close"), "\(change): \(first ?? [:])")
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
    }
}
