import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore
import PollwireEngine

/// Results, served from the TallyBook's cached snapshots: the bytes are encoded once per
/// version and shared by every response (no copy, no encode per request).
struct ResultsController {
    let book: TallyBook
    let finder: PollFinder
    let signer: Signer
    let settings: PollwireSettings
    let now: @Sendable () -> Date
    /// The server's default `Cache-Control`, formatted once (most polls use it).
    let defaultCacheControl: String

    init(
        book: TallyBook, finder: PollFinder, signer: Signer, settings: PollwireSettings,
        now: @escaping @Sendable () -> Date
    ) {
        self.book = book
        self.finder = finder
        self.signer = signer
        self.settings = settings
        self.now = now
        self.defaultCacheControl = settings.resultsCache.cacheControl
    }

    static let maxPollsPerRequest = 100

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/results", use: self.single)
        group.get("/results", use: self.many)
    }

    /// `GET /v1/polls/{id}/results`: 200 with ETag, or 304 when `If-None-Match` matches. The
    /// same answer as the event-loop fast path gives (`single(pollID:...)`), for the requests it
    /// passes on (and when it is not in the pipeline).
    @Sendable func single(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        guard self.book.isLoaded else { throw VotesController.notReady }
        let id = try context.parameters.require("id")
        let receipt = request.headers[.pollwireReceipt] ?? request.uri.queryParameters.get("receipt")
        // A poll this node has not heard of yet is looked up once (another node may have just made it).
        guard await self.finder.knows(id),
            let answer = try self.single(
                pollID: id, origin: request.headers[.origin], receipt: receipt,
                ifNoneMatch: request.headers[.ifNoneMatch])
        else { throw APIError.notFound("poll") }
        guard answer.notModified else { return Response.json(.ok, answer.snapshot.body, headers: answer.fields) }
        return Response(status: .notModified, headers: answer.fields)
    }

    /// A poll's results for one viewer, transport-neutral: the snapshot, the caching headers
    /// (`ETag`, `Cache-Control`, `Surrogate-Key`, `Vary`, `Pollwire-Stale`), and whether
    /// `If-None-Match` names it (304). Nil when there is no such poll; throws for an origin the
    /// poll refuses.
    func single(
        pollID id: String, origin: String?, receipt: String?, ifNoneMatch: String?
    ) throws(APIError) -> ResultsAnswer? {
        guard let (snapshot, poll, privately) = try self.snapshot(of: id, origin: origin, receipt: receipt) else {
            return nil
        }
        let fields = self.fields(snapshot, poll: poll, privately: privately)
        let notModified = ifNoneMatch.map { Self.matches($0, etag: snapshot.etag) } ?? false
        return ResultsAnswer(snapshot: snapshot, fields: fields, notModified: notModified)
    }

    /// The caching headers of one poll's results (`ETag`, `Cache-Control`, `Surrogate-Key`,
    /// `Vary`, `Pollwire-Stale`).
    func fields(_ snapshot: Snapshot, poll: Poll, privately: Bool) -> HTTPFields {
        var fields: HTTPFields = [
            .eTag: snapshot.etag,
            .cacheControl: self.cacheControl(poll.settings.cache, privately: privately),
            .surrogateKey: snapshot.surrogateKey,
            .vary: "Pollwire-Receipt",
        ]
        if snapshot.stale { fields[.pollwireStale] = "true" }
        return fields
    }

    /// `GET /v1/results?polls=a,b`: `{"results": [...], "missing": [...]}` in the order asked.
    @Sendable func many(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        guard self.book.isLoaded else { throw VotesController.notReady }
        let ids = (request.uri.queryParameters.get("polls") ?? "").split(separator: ",").map(String.init)
        guard !ids.isEmpty, ids.count <= Self.maxPollsPerRequest else {
            throw APIError(
                .badRequest, .badRequest, "polls must list 1 to \(Self.maxPollsPerRequest) poll ids, comma-separated")
        }
        var snapshots: [Snapshot] = []
        var missing: [String] = []
        var privately = false
        var cache: ResultsCache?
        let origin = request.headers[.origin]
        let receipt = request.headers[.pollwireReceipt] ?? request.uri.queryParameters.get("receipt")
        for id in ids {
            _ = await self.finder.knows(id)  // a poll another node made a moment ago, looked up first
            if let (snapshot, poll, isPrivate) = try self.snapshot(of: id, origin: origin, receipt: receipt) {
                snapshots.append(snapshot)
                privately = privately || isPrivate
                cache = Self.shortest(cache, poll.settings.cache ?? self.settings.resultsCache)
            } else {
                missing.append(id)
            }
        }
        let etag = Self.combinedETag(snapshots, missing: missing)
        var headers: HTTPFields = [
            .eTag: etag, .cacheControl: self.cacheControl(cache, privately: privately),
            .surrogateKey: snapshots.map(\.surrogateKey).joined(separator: " "),
            .vary: "Pollwire-Receipt",
        ]
        if snapshots.contains(where: \.stale) { headers[.pollwireStale] = "true" }
        if let match = request.headers[.ifNoneMatch], Self.matches(match, etag: etag) {
            return Response(status: .notModified, headers: headers)
        }
        var buffer = ByteBufferAllocator().buffer(
            capacity: snapshots.reduce(32) { $0 + $1.body.readableBytes + 1 } + 8 * missing.count)
        buffer.writeString("{\"results\":[")
        for (index, snapshot) in snapshots.enumerated() {
            if index > 0 { buffer.writeString(",") }
            buffer.writeImmutableBuffer(snapshot.body)
        }
        buffer.writeString("],\"missing\":[")
        for (index, id) in missing.enumerated() {
            if index > 0 { buffer.writeString(",") }
            var quoted = ""
            JSONText.appendQuoted(id, to: &quoted)
            buffer.writeString(quoted)
        }
        buffer.writeString("]}")
        return Response.json(.ok, buffer, headers: headers)
    }

    /// The snapshot this viewer may see, its poll, and whether it is private to them
    /// (after_vote). Throws `origin_not_allowed` for a browser on an origin the poll refuses.
    func snapshot(of id: String, origin: String?, receipt: String?) throws(APIError) -> (Snapshot, Poll, Bool)? {
        guard let poll = self.book.poll(id) else { return nil }
        try OriginPolicy.check(origin, poll: poll)
        let full = self.signer.showsResults(of: poll, receipt: receipt, at: self.now())
        guard let snapshot = self.book.snapshot(of: id, hidden: !full) else { return nil }
        return (snapshot, poll, poll.settings.visibility == .afterVote && full)
    }

    /// A receipt holder's results are theirs alone; everyone else's may be cached, for the
    /// poll's lifetimes or the server's.
    func cacheControl(_ cache: ResultsCache?, privately: Bool) -> String {
        if privately { return "private, no-cache" }
        guard let cache, cache != self.settings.resultsCache else { return self.defaultCacheControl }
        return cache.cacheControl
    }

    /// Lifetimes for several polls at once: the shortest of each.
    static func shortest(_ a: ResultsCache?, _ b: ResultsCache) -> ResultsCache {
        guard let a else { return b }
        return ResultsCache(
            maxAge: min(a.maxAge, b.maxAge), sharedMaxAge: min(a.sharedMaxAge, b.sharedMaxAge),
            staleWhileRevalidate: min(a.staleWhileRevalidate, b.staleWhileRevalidate))
    }

    /// Whether an `If-None-Match` value names `etag` (a list, or `*`), by the weak comparison
    /// RFC 9110 asks of If-None-Match: `W/` prefixes do not matter.
    static func matches(_ header: String, etag: String) -> Bool {
        let opaque = etag.hasPrefix("W/") ? etag.dropFirst(2) : Substring(etag)
        return header.split(separator: ",").contains { candidate in
            var tag = Substring(candidate.trimmingCharacters(in: .whitespaces))
            if tag == "*" { return true }
            if tag.hasPrefix("W/") { tag = tag.dropFirst(2) }
            return tag == opaque
        }
    }

    /// One ETag for a set of snapshots: FNV-1a over their ETags and the missing ids.
    static func combinedETag(_ snapshots: [Snapshot], missing: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for text in snapshots.map(\.etag) + missing {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            hash ^= 0x2C
            hash = hash &* 0x100_0000_01b3
        }
        return "W/\"r-\(String(hash, radix: 16))\""
    }
}

/// What `ResultsController.single(pollID:...)` decided: the snapshot, its headers, and whether
/// the client's copy is current (304).
struct ResultsAnswer {
    let snapshot: Snapshot
    let fields: HTTPFields
    let notModified: Bool
}
