import Foundation
import HTTPTypes
import Hummingbird
import PollwireCore
import PollwireEngine

/// `GET /v1/polls/{id}/timeline?window=10s&from=&to=&momentum=3`: the poll's ballots over time
/// in tumbling windows (`Timeline`), read from the window counts its store keeps as ballots
/// commit (`WindowCount`). Who may read a poll's results may read its timeline; before they
/// may, windows carry ballot counts only (as hidden results carry the total only).
struct TimelineController {
    let store: any PollStore
    let finder: PollFinder
    let signer: Signer
    let limits: EdgeLimits
    let now: @Sendable () -> Date
    /// The widths a timeline comes in (`window=`, `analytics.windows`), in seconds.
    let widths: [(label: String, seconds: Int64)]
    /// The width when `window` is not given: `10s` when listed, else the first.
    let defaultWidth: String
    /// `analytics.allowedLatenessSeconds`: how long after its end a window may still change.
    let latenessSeconds: Int64

    init(
        store: any PollStore, finder: PollFinder, signer: Signer, limits: EdgeLimits, widths: [String],
        latenessSeconds: Int, now: @escaping @Sendable () -> Date
    ) {
        self.latenessSeconds = Int64(latenessSeconds)
        self.store = store
        self.finder = finder
        self.signer = signer
        self.limits = limits
        self.now = now
        self.widths = widths.compactMap { label in Timeline.seconds(ofWidth: label).map { (label, $0) } }
        self.defaultWidth = widths.contains("10s") ? "10s" : widths.first ?? "10s"
    }
    /// Most windows one answer holds: a longer range needs a wider window.
    static let maxWindows: Int64 = 3600
    /// Windows an answer covers when `from` is not given.
    static let defaultWindows: Int64 = 60

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/timeline", use: self.timeline)
    }

    @Sendable func timeline(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let query = request.uri.queryParameters
        let label = query.get("window").map { String($0) } ?? self.defaultWidth
        guard let width = self.widths.first(where: { $0.label == label })?.seconds else {
            throw APIError.invalid(
                ValidationError(field: "window", "must be one of \(self.widths.map(\.label).joined(separator: ", "))"))
        }
        let momentum = try Self.momentum(query.get("momentum").map { String($0) })
        let now = self.now()
        let nowSecond = Int64(now.timeIntervalSince1970.rounded(.down))
        // `to` defaults to the end of the window now is in; `from` to `defaultWindows` before it.
        let to =
            try Self.second(query.get("to").map { String($0) }, field: "to") ?? Timeline.align(nowSecond, width) + width
        let from =
            try Self.second(query.get("from").map { String($0) }, field: "from") ?? to - Self.defaultWindows * width
        guard from < to else { throw APIError.invalid(ValidationError(field: "from", "must be before to")) }
        guard (to - from) / width <= Self.maxWindows else {
            throw APIError.invalid(
                ValidationError(
                    field: "window", "\(label) windows from from to to would be more than \(Self.maxWindows)"))
        }
        try self.limits.timelineFromAddress(self.limits.clientAddress(request, channel: context.channel))
        guard let poll = await self.finder.poll(id) else { throw APIError.notFound("poll") }
        try OriginPolicy.check(request.headers[.origin], poll: poll)
        let receipt = request.headers[.pollwireReceipt] ?? query.get("receipt").map { String($0) }
        let hidden = !self.signer.showsResults(of: poll, receipt: receipt, at: now)
        let rows = try await self.store.windowCounts(
            pollID: id, from: Timeline.align(from, width), to: Timeline.align(to + width - 1, width))
        let timeline = Timeline(
            rows: rows, width: width, from: from, to: to + width - 1, now: now,
            latenessSeconds: self.latenessSeconds)
        let body = timeline.json(pollID: id, label: label, momentum: momentum, hidden: hidden)
        let cache =
            hidden ? "no-store" : poll.settings.visibility == .afterVote ? "private, no-cache" : "public, max-age=1"
        return Response.json(.ok, body, headers: [.cacheControl: cache])
    }

    /// A `from` or `to` parameter as whole seconds since 1970 (nil when absent).
    static func second(_ text: String?, field: String) throws -> Int64? {
        guard let date = try AuditController.date(text, field: field) else { return nil }
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard Timeline.representableSeconds.contains(seconds) else {
            throw APIError.invalid(ValidationError(field: field, "must be a time from 1970 to the year 3000"))
        }
        return Int64(seconds)
    }

    static func momentum(_ text: String?) throws -> Int {
        guard let text else { return 3 }
        guard let value = Int(text), (1...60).contains(value) else {
            throw APIError.invalid(ValidationError(field: "momentum", "must be a whole number from 1 to 60"))
        }
        return value
    }
}
