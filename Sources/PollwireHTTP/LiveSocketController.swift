import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import PollwireCore
import PollwireEngine
import ServiceLifecycle
import Synchronization

/// The request context of WebSocket upgrades (`GET /v1/live`); kept apart from the HTTP
/// routes' context so ordinary requests do not pay for the upgrade's handler reference.
struct LiveSocketRequestContext: RequestContext, WebSocketRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.channel = source.channel
    }
}

/// `GET /v1/live`: one WebSocket, many polls.
///
/// Client messages (JSON text):
/// `{"type": "subscribe", "polls": ["a", "b"], "receipts": {"a": "..."}}` and
/// `{"type": "unsubscribe", "polls": ["a"]}`.
/// Server messages: `{"type": "subscribed", "polls": [...], "missing": [...]}`,
/// `{"type": "unsubscribed", "polls": [...]}`, `{"type": "error", "error": {...}}`, and each
/// results update as the results JSON itself (the same bytes as `GET /results`, which name
/// their `poll` and `version`), sent at once on subscribe and then on every new version.
struct LiveSocketController {
    let hub: Hub
    let book: TallyBook
    let signer: Signer
    let metrics: LiveMetrics
    /// Most polls one socket may follow.
    static let maxPolls = 100
    /// Largest client message.
    static let maxMessageBytes = 16 * 1024

    struct ClientMessage: Decodable {
        var type: String
        var polls: [String]?
        var receipts: [String: String]?
    }

    func addRoutes(to router: Router<LiveSocketRequestContext>) {
        router.ws("/v1/live") { _, _ in
            self.book.isLoaded ? .upgrade([:]) : .dontUpgrade
        } onUpgrade: { inbound, outbound, context in
            try await self.serve(inbound: inbound, outbound: outbound, channel: context.requestContext.channel)
        }
    }

    func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel) async throws {
        let connection = LiveConnection(channel: channel, metrics: self.metrics)
        let subscriptions = SubscriptionSet()
        self.metrics.connected()
        defer {
            for pollID in subscriptions.all { self.hub.unsubscribe(connection, from: pollID) }
            self.metrics.disconnected()
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Writer: results frames, shared bytes, as text messages.
                    while let item = await connection.next() {
                        guard case .frame(let frame) = item, connection.isNew(frame) else { continue }
                        try? await connection.writing(frame) {
                            try await outbound.write(
                                .custom(WebSocketFrame(fin: true, opcode: .text, data: frame.json)))
                        }
                    }
                }
                group.addTask {
                    // Reader: subscribe and unsubscribe.
                    do {
                        for try await message in inbound.messages(maxSize: Self.maxMessageBytes) {
                            let reply = self.handle(message, connection: connection, subscriptions: subscriptions)
                            try await outbound.write(.text(reply))
                        }
                    } catch {}
                }
                _ = await group.next()
                connection.close(reason: "the connection ended")
                group.cancelAll()
            }
        } onGracefulShutdown: {
            connection.close(reason: "the server is shutting down")
        }
    }

    /// Applies one client message and returns the reply.
    func handle(_ message: WebSocketMessage, connection: LiveConnection, subscriptions: SubscriptionSet) -> String {
        guard case .text(let text) = message,
            let request = try? JSONDecoder().decode(ClientMessage.self, from: Data(text.utf8))
        else {
            return Self.error(.invalidJSON, "messages are JSON text: {\"type\": \"subscribe\", \"polls\": [...]}")
        }
        let polls = request.polls ?? []
        switch request.type {
        case "subscribe":
            var subscribed: [String] = []
            var missing: [String] = []
            for pollID in polls {
                guard let poll = self.book.poll(pollID), poll.status != .draft else {
                    missing.append(pollID)
                    continue
                }
                guard subscriptions.insert(pollID, limit: Self.maxPolls) else {
                    return Self.error(.badRequest, "a socket may follow at most \(Self.maxPolls) polls")
                }
                let receipt = request.receipts?[pollID]
                connection.setReceipt(
                    receipt.map { self.signer.isValidReceipt($0, pollID: pollID) } ?? false, for: pollID)
                self.hub.subscribe(connection, to: pollID)
                if let frame = self.hub.currentFrame(of: pollID, hasVoted: connection.hasVoted(pollID)) {
                    connection.offer(frame)
                }
                subscribed.append(pollID)
            }
            return "{\"type\":\"subscribed\",\"polls\":\(Self.list(subscribed)),\"missing\":\(Self.list(missing))}"
        case "unsubscribe":
            for pollID in polls where subscriptions.remove(pollID) {
                self.hub.unsubscribe(connection, from: pollID)
                connection.forget(pollID)
            }
            return "{\"type\":\"unsubscribed\",\"polls\":\(Self.list(polls))}"
        default:
            return Self.error(.badRequest, "type must be subscribe or unsubscribe")
        }
    }

    static func list(_ ids: [String]) -> String {
        var text = "["
        for (index, id) in ids.enumerated() {
            if index > 0 { text += "," }
            JSONText.appendQuoted(id, to: &text)
        }
        return text + "]"
    }

    static func error(_ code: APIError.Code, _ message: String) -> String {
        let json = APIError(.badRequest, code, message).json
        return "{\"type\":\"error\"," + json.dropFirst()
    }
}

/// The polls one socket follows.
final class SubscriptionSet: Sendable {
    private let polls = Mutex(Set<String>())

    func insert(_ pollID: String, limit: Int) -> Bool {
        self.polls.withLock { polls in
            if polls.contains(pollID) { return true }
            guard polls.count < limit else { return false }
            polls.insert(pollID)
            return true
        }
    }

    func remove(_ pollID: String) -> Bool {
        self.polls.withLock { $0.remove(pollID) != nil }
    }

    var all: [String] { self.polls.withLock { Array($0) } }
}
