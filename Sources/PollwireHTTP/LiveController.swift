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

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/live") { request, context -> Response in
            guard self.book.isLoaded else { throw VotesController.notReady }
            let id = try context.parameters.require("id")
            if self.book.poll(id) == nil, await self.finder.knows(id), request.method == .get {
                // Another node made the poll a moment ago and this one has just learned of it:
                // the stream is served on the event loop, so the client asks again.
                return Response(
                    status: .temporaryRedirect,
                    headers: [.location: request.uri.description, .cacheControl: "no-store"])
            }
            if let poll = self.book.poll(id), poll.status != .draft {
                try OriginPolicy.check(request.headers[.origin], poll: poll)
                // HEAD: the stream's head, without the stream.
                if request.method == .head {
                    return Response(
                        status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"])
                }
            }
            throw APIError.notFound("poll")
        }
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}
