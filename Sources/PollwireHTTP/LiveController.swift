import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore
import PollwireEngine
import ServiceLifecycle

/// `GET /v1/polls/{id}/live`: results as Server-Sent Events.
///
/// The stream starts with a `retry:` hint (1 to 3 s, jittered so that a server restart does
/// not bring every viewer back in the same instant), then the current results at once (unless
/// `Last-Event-ID` already names the current version), then each new version as
/// `id: <version>`, `event: results`, `data: <the results JSON>`. An idle stream gets a
/// `: ping` comment every heartbeat interval. On shutdown every stream ends cleanly.
struct LiveController {
    let hub: Hub
    let book: TallyBook
    let signer: Signer
    let metrics: LiveMetrics

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/live", use: self.events)
    }

    static let ping = ByteBuffer(string: ": ping\n\n")

    @Sendable func events(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        guard self.book.isLoaded else { throw VotesController.notReady }
        let id = try context.parameters.require("id")
        guard let poll = self.book.poll(id), poll.status != .draft else { throw APIError.notFound("poll") }
        let receipt = request.headers[.pollwireReceipt] ?? request.uri.queryParameters.get("receipt")
        let hasVoted = receipt.map { self.signer.isValidReceipt($0, pollID: id) } ?? false
        let lastEventID = request.headers[.lastEventID].flatMap { Int64($0) }
        let connection = LiveConnection(channel: context.channel, metrics: self.metrics)
        connection.setReceipt(hasVoted, for: id)
        let hub = self.hub
        let metrics = self.metrics

        let body = ResponseBody { writer in
            hub.subscribe(connection, to: id)
            metrics.connected()
            defer {
                hub.unsubscribe(connection, from: id)
                metrics.disconnected()
            }
            try await writer.write(ByteBuffer(string: "retry: \(Int.random(in: 1000...3000))\n\n"))
            if let frame = hub.currentFrame(of: id, hasVoted: hasVoted), frame.version != lastEventID || frame.hidden {
                try await connection.writing(frame) { try await writer.write(frame.event) }
            }
            try await withGracefulShutdownHandler {
                while let item = await connection.next() {
                    switch item {
                    case .frame(let frame):
                        guard connection.isNew(frame) else { continue }
                        try await connection.writing(frame) { try await writer.write(frame.event) }
                    case .ping:
                        try await connection.writing(nil) { try await writer.write(Self.ping) }
                    }
                }
            } onGracefulShutdown: {
                connection.close(reason: "the server is shutting down")
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store",
                HTTPField.Name("X-Accel-Buffering")!: "no",
            ],
            body: body)
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}
