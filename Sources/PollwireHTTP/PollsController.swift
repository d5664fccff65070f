import Foundation
import HTTPTypes
import Hummingbird
import PollwireCore
import PollwireEngine

/// Poll management (API key) and the public poll definition.
struct PollsController {
    let store: any PollStore
    let book: TallyBook
    let finder: PollFinder
    let hub: Hub
    let purger: CachePurger?
    let settings: PollwireSettings
    let now: @Sendable () -> Date
    let authenticator: KeyAuthenticator

    func addManagementRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.post("/polls", use: self.create)
        group.get("/polls", use: self.list)
        group.patch("/polls/{id}", use: self.update)
        group.delete("/polls/{id}", use: self.delete)
        group.post("/polls/{id}/open") { request, context in
            try await self.transition("poll.open", context) { poll in
                poll.status = .open
            }
        }
        group.post("/polls/{id}/close") { request, context in
            try await self.transition("poll.close", context) { poll in
                poll.status = .closed
            }
        }
        group.post("/polls/{id}/reveal") { request, context in
            try await self.transition("poll.reveal", context) { poll in
                poll.revealed = true
            }
        }
    }

    func addPublicRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}", use: self.show)
    }

    // MARK: Handlers

    @Sendable func create(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.write)
        try self.requireLoaded()
        let body = try await request.decodeJSON(CreatePollRequest.self, limit: self.settings.maxBodyBytes)
        if let status = body.status, status == .closed {
            throw APIError.invalid(ValidationError(field: "status", "must be draft or open"))
        }
        let now = self.now()
        let poll = Poll(
            id: Identifier.random(), owner: principal.owner, title: body.title, questions: body.questions,
            settings: body.settings ?? PollSettings(), status: body.status ?? .open, opensAt: body.opensAt,
            closesAt: body.closesAt, createdAt: now, updatedAt: now)
        try self.validate(poll)
        try await self.store.insert(
            poll,
            audit: principal.audit(
                "poll.create", at: now, poll: poll.id, detail: PollAudit.changes(from: nil, to: poll)))
        self.book.put(poll)
        return try Response.json(
            .created, encoding: PollView(poll, version: 0, total: 0, now: now),
            headers: [.location: "/v1/polls/\(poll.id)"])
    }

    @Sendable func list(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.read)
        try self.requireLoaded()
        let limit = min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? 100, 1), 1000)
        let offset = max(request.uri.queryParameters.get("offset", as: Int.self) ?? 0, 0)
        let now = self.now()
        let polls = self.book.polls().lazy.filter(principal.owns).dropFirst(offset).prefix(limit).map { poll in
            let state = self.book.state(of: poll.id)
            return PollView(poll, version: state?.version ?? 0, total: state?.ballots ?? 0, now: now)
        }
        return try Response.json(.ok, encoding: PollList(polls: Array(polls)))
    }

    @Sendable func show(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        try self.requireLoaded()
        let id = try context.parameters.require("id")
        guard let poll = await self.finder.poll(id) else { throw APIError.notFound("poll") }
        if poll.status == .draft {
            // A draft is shown to its owner's keys only; to anyone else it does not exist.
            guard request.headers[.authorization] != nil,
                let key = try? await self.authenticator.authenticate(request, context: context),
                key.owner == poll.owner, key.scopes.contains(.read)
            else { throw APIError.notFound("poll") }
        }
        try OriginPolicy.check(request.headers[.origin], poll: poll)
        let state = self.book.state(of: id)
        return try Response.json(
            .ok, encoding: PollView(poll, version: state?.version ?? 0, total: state?.ballots ?? 0, now: self.now()),
            headers: [.cacheControl: "public, max-age=5"])
    }

    @Sendable func update(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.write)
        try self.requireLoaded()
        let id = try context.parameters.require("id")
        let body = try await request.decodeJSON(UpdatePollRequest.self, limit: self.settings.maxBodyBytes)
        let old = try await self.owned(id, by: principal)
        var poll = old
        if let title = body.title { poll.title = title }
        if let settings = body.settings { poll.settings = settings }
        poll.opensAt = body.opensAt.applied(to: poll.opensAt)
        poll.closesAt = body.closesAt.applied(to: poll.closesAt)
        if let questions = body.questions, questions != poll.questions {
            // Stored ballots were validated against the old questions: changing them would
            // make the tallies mean something else.
            guard try await self.store.ballotCount(pollID: id) == 0 else {
                throw APIError(.conflict, .conflict, "questions cannot change once the poll has ballots")
            }
            poll.questions = questions
        }
        poll.updatedAt = self.now()
        try self.validate(poll)
        return try await self.save(poll, was: old, action: "poll.update", by: principal)
    }

    @Sendable func delete(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.write)
        try self.requireLoaded()
        let id = try context.parameters.require("id")
        let poll = try await self.owned(id, by: principal)
        let audit = principal.audit(
            "poll.delete", at: self.now(), poll: id, detail: PollAudit.changes(from: poll, to: nil))
        guard try await self.store.delete(pollID: id, audit: audit) else { throw APIError.notFound("poll") }
        self.book.remove(id)
        self.purger?.changed([id])
        return Response(status: .noContent)
    }

    func transition(
        _ action: String, _ context: PollwireRequestContext, _ change: (inout Poll) -> Void
    ) async throws -> Response {
        let principal = try context.principal(.write)
        try self.requireLoaded()
        let id = try context.parameters.require("id")
        let old = try await self.owned(id, by: principal)
        var poll = old
        change(&poll)
        poll.updatedAt = self.now()
        return try await self.save(poll, was: old, action: action, by: principal)
    }

    // MARK: Helpers

    /// The poll `id` when `principal`'s owner owns it; 404 otherwise, as for a poll that does not exist.
    func owned(_ id: String, by principal: Principal) async throws -> Poll {
        guard let poll = await self.finder.poll(id), principal.owns(poll) else { throw APIError.notFound("poll") }
        return poll
    }

    func save(_ poll: Poll, was old: Poll, action: String, by principal: Principal) async throws -> Response {
        let audit = principal.audit(
            action, at: poll.updatedAt, poll: poll.id, detail: PollAudit.changes(from: old, to: poll))
        guard try await self.store.update(poll, audit: audit) else { throw APIError.notFound("poll") }
        self.book.put(poll)
        // Visibility may have changed (reveal, close, settings): live viewers get the new view.
        self.hub.touch(poll.id)
        self.purger?.changed([poll.id])
        let state = self.book.state(of: poll.id)
        return try Response.json(
            .ok, encoding: PollView(poll, version: state?.version ?? 0, total: state?.ballots ?? 0, now: self.now()))
    }

    func validate(_ poll: Poll) throws {
        do {
            try poll.validateDefinition()
        } catch {
            throw APIError.invalid(error)
        }
    }

    func requireLoaded() throws {
        guard self.book.isLoaded else {
            throw APIError(.serviceUnavailable, .notReady, "the server is still loading", retryAfter: 1)
        }
    }
}
