import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import PollwireCore
import PollwireEngine
import PollwireHTTP
import ServiceLifecycle
import Synchronization
import Testing

/// A node asked for a poll it has not heard of asks its change feed to look it up in the store
/// first (in a cluster, another node may have made it a moment ago). Here the "other node" is the
/// test: it creates a poll through the API, so the store holds it, then takes it out of the book;
/// the feed looks it up in the server's own store as `PostgresChangeFeed` does in PostgreSQL
/// (that one runs in ClusterTests).
@Suite(.timeLimit(.minutes(1))) struct CatchUpTests {
    final class StoreLookupFeed: ChangeFeed, Sendable {
        let sink: ChangeSink
        let store: any PollStore
        let lookups: Atomic<Int>

        init(sink: ChangeSink, store: any PollStore) {
            self.sink = sink
            self.store = store
            self.lookups = Atomic(0)
        }

        var isSynced: Bool { true }

        func run() async throws {
            try? await gracefulShutdown()
        }

        func catchUp(_ pollID: String) async -> Bool {
            self.lookups.wrappingAdd(1, ordering: .relaxed)
            guard
                let stored = try? await self.store.loadPolls(latestTextLimit: self.sink.book.latestTextLimit)
                    .first(where: { $0.poll.id == pollID })
            else { return false }
            self.sink.resync(stored)
            return true
        }
    }

    /// Runs `body` with a server whose feed is a `StoreLookupFeed`, and that feed.
    static func run(_ body: @Sendable (TestServer, StoreLookupFeed) async throws -> Void) async throws {
        let made = Mutex<StoreLookupFeed?>(nil)
        try await TestServer.run(
            changeFeed: { sink, store in
                let feed = StoreLookupFeed(sink: sink, store: store)
                made.withLock { $0 = feed }
                return feed
            }
        ) { server in
            let feed = try #require(made.withLock { $0 })
            try await body(server, feed)
        }
    }

    /// A poll in the store that the book does not hold: "made on another node".
    static func madeElsewhere(_ server: TestServer) async throws -> String {
        let id = try await server.createPoll()
        server.parts.book.remove(id)
        #expect(server.parts.book.poll(id) == nil)
        return id
    }

    @Test func votesReadsAndDefinitionsFindIt() async throws {
        try await Self.run { server, feed in
            var id = try await Self.madeElsewhere(server)
            let vote = try await server.vote(id, #"{"voter": "x", "answers": {"q1": ["a"]}}"#)
            #expect(vote.status == .created, "\(String(buffer: vote.body))")
            #expect(server.parts.book.poll(id) != nil)

            id = try await Self.madeElsewhere(server)
            let results = try await server.request(.get, "/v1/polls/\(id)/results")
            #expect(results.status == .ok)
            #expect(try results.object()["poll"] as? String == id)

            id = try await Self.madeElsewhere(server)
            let many = try await server.request(.get, "/v1/results?polls=\(id),nope")
            #expect(try many.object()["missing"] as? [String] == ["nope"])

            id = try await Self.madeElsewhere(server)
            #expect(try await server.request(.get, "/v1/polls/\(id)").status == .ok)

            id = try await Self.madeElsewhere(server)
            let closed = try await server.request(.post, "/v1/polls/\(id)/close", auth: true)
            #expect(closed.status == .ok, "\(String(buffer: closed.body))")

            // Unknown everywhere: still 404, after one look in the store.
            let before = feed.lookups.load(ordering: .relaxed)
            let unknown = try await server.request(.get, "/v1/polls/nowhere0000000000/results")
            #expect(unknown.status == .notFound)
            #expect(feed.lookups.load(ordering: .relaxed) == before + 1)
        }
    }

    /// A live stream is served on the event loop: after the lookup the node answers 307 to the
    /// same URL, and the next request streams.
    @Test func aLiveStreamIsSentBackToItself() async throws {
        try await Self.run { server, _ in
            let id = try await Self.madeElsewhere(server)
            let first = try await server.request(.get, "/v1/polls/\(id)/live")
            #expect(first.status == .temporaryRedirect)
            #expect(first.headers[.location] == "/v1/polls/\(id)/live")
            #expect(server.parts.book.poll(id) != nil)
        }
    }

    @Test func aSocketSubscriptionFindsIt() async throws {
        try await Self.run { server, _ in
            let id = try await Self.madeElsewhere(server)
            let known = try await server.createPoll()
            let port = try #require(server.client.port)
            try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live", logger: Logger(label: "ws")) {
                inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(id)", "nope"]}"#))
                // Sent before the first is answered: answered after it, in order.
                try await outbound.write(.text(#"{"type": "subscribe", "polls": ["\#(known)"]}"#))
                let first = try await LiveWebSocketTests.read(&messages) { $0["type"] as? String == "subscribed" }
                #expect(first?["polls"] as? [String] == [id])
                #expect(first?["missing"] as? [String] == ["nope"])
                let second = try await LiveWebSocketTests.read(&messages) { $0["type"] as? String == "subscribed" }
                #expect(second?["polls"] as? [String] == [known])
                let update = try await LiveWebSocketTests.read(&messages) { $0["poll"] as? String == id }
                #expect(update?["version"] as? Int == 0)
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
    }
}
