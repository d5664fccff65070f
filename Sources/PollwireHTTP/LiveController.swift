import HTTPTypes
import Hummingbird
import PollwireCore
import PollwireEngine

/// The router's side of `GET /v1/polls/{id}/live`: only the requests `LiveEventsHandler` lets
/// through reach it, those it cannot stream (unknown or draft poll, tallies still loading), and
/// it answers them with the usual JSON errors, and `HEAD` with the stream's head. The stream
/// itself never comes here.
struct LiveController {
    let book: TallyBook
    let finder: PollFinder
    /// The window widths `windows=` may name.
    let widths: [String]

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/live") { request, context -> Response in
            guard self.book.isLoaded else { throw VotesController.notReady }
            let id = try context.parameters.require("id")
            if let width = request.uri.queryParameters.get("windows"), !self.widths.contains(String(width)) {
                throw APIError.invalid(
                    ValidationError(field: "windows", "must be one of \(self.widths.joined(separator: ", "))"))
            }
            // In a cluster a poll another node made a moment ago may be unknown here: look it up.
            if let poll = await self.finder.poll(id), poll.status != .draft {
                try OriginPolicy.check(request.headers[.origin], poll: poll)
                // HEAD: the stream's head, without the stream.
                if request.method == .head {
                    return Response(
                        status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"])
                }
                // The event loop did not know the poll when the request passed it; it does now
                // (looked up, or its notification arrived meanwhile). The stream is served there,
                // so the client asks again.
                return Response(
                    status: .temporaryRedirect,
                    headers: [.location: request.uri.description, .cacheControl: "no-store"])
            }
            throw APIError.notFound("poll")
        }
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}
