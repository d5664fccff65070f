import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore
import PollwireEngine

/// Votes: single (`POST /v1/polls/{id}/votes`), batch (`POST /v1/votes:batch`), and device tokens.
struct VotesController {
    let intake: VoteIntake
    let ingestor: VoteIngestor
    let book: TallyBook
    let finder: PollFinder
    let settings: PollwireSettings
    let limits: EdgeLimits
    let voterTokens: VoterTokens

    func addPublicRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.post("/polls/{id}/votes", use: self.vote)
        group.post("/device-tokens", use: self.issueDeviceToken)
    }

    func addManagementRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.post("/votes:batch", use: self.batch)
    }

    /// The way of a vote: decode (size-capped) -> validate against the cached definition ->
    /// submit to the ingestor -> answer after the commit.
    @Sendable func vote(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        guard self.book.isLoaded else { throw Self.notReady }
        let id = try context.parameters.require("id")
        let poll = await self.finder.poll(id)
        if let origin = request.headers[.origin], let poll { try OriginPolicy.check(origin, poll: poll) }
        // The address limit comes before reading the body: a flood is refused cheaply.
        try self.limits.voteFromAddress(self.limits.clientAddress(request, channel: context.channel))
        let body = try await request.decodeJSON(VoteBody.self, limit: self.settings.maxBodyBytes, fast: BallotJSON.vote)
        let idempotencyKey = request.headers[.idempotencyKey]
        var voter = body.voter
        if let poll, poll.settings.signedVoters {
            // The voter is who the owner's site signed for; a body that names another is refused.
            let signed = try await self.voterTokens.voter(token: request.headers[.pollwireVoterToken], poll: poll)
            guard voter == nil || voter == signed else {
                throw APIError.invalid(ValidationError(field: "voter", "must be the voter the token names, or absent"))
            }
            voter = signed
        }
        let checked = try self.intake.command(
            pollID: id, poll: poll, voter: voter, device: body.device ?? request.headers[.pollwireDevice],
            idempotencyKey: idempotencyKey, answers: body.answers)
        if let voter = checked.command.voter {
            try self.limits.voteByVoter(voter, poll: id, limit: poll?.settings.voterLimit)
        }
        let submitted: VoteIngestor.Submitted
        do {
            submitted = try await self.ingestor.submitForReceipts([checked.command])
        } catch {
            throw VoteIntake.unavailable(error, retryAfter: self.settings.retryAfterSeconds)
        }
        let outcome = submitted.outcomes[0]
        var answer = ByteBuffer()
        let status = self.intake.write(
            outcome, receipt: checked.receipt, ballot: submitted.receipts.first ?? nil, withStatus: false,
            into: &answer)
        var headers: HTTPFields = [.cacheControl: "no-store"]
        if outcome.isReplay { headers[.idempotentReplayed] = "true" }
        return Response.json(status, answer, headers: headers)
    }

    /// Up to `maxBatchBallots` ballots, possibly for many polls, in ONE submission: they commit
    /// in the same transaction. Each ballot gets its own status in `results`, in order.
    @Sendable func batch(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.write)
        guard self.book.isLoaded else { throw Self.notReady }
        let body = try await request.decodeJSON(
            BatchBody.self, limit: self.settings.maxBatchBodyBytes, fast: BallotJSON.batch)
        guard !body.ballots.isEmpty, body.ballots.count <= self.settings.maxBatchBallots else {
            throw APIError.invalid(
                ValidationError(field: "ballots", "must hold 1 to \(self.settings.maxBatchBallots) ballots"))
        }
        var answers = [(HTTPResponse.Status, String)?](repeating: nil, count: body.ballots.count)
        var commands: [VoteCommand] = []
        var positions: [(index: Int, receipt: String?)] = []
        commands.reserveCapacity(body.ballots.count)
        // One clock reading and one book lookup per run of ballots for the same poll.
        let now = self.intake.now()
        var last: (id: String, poll: Poll?)?
        for (index, ballot) in body.ballots.enumerated() {
            do {
                if last?.id != ballot.poll {
                    // Another owner's poll is one that does not exist: 404 for that ballot.
                    last = (ballot.poll, await self.finder.poll(ballot.poll).flatMap { principal.owns($0) ? $0 : nil })
                }
                var checked = try self.intake.command(
                    pollID: ballot.poll, poll: last?.poll, voter: ballot.voter, device: ballot.device,
                    idempotencyKey: ballot.idempotencyKey, answers: ballot.answers, at: now)
                if let castAt = ballot.castAt {
                    checked.command.castAt = try self.castAt(castAt, arrival: now)
                    checked.command.latenessMicros = Int64(self.settings.allowedLatenessSeconds) * 1_000_000
                }
                commands.append(checked.command)
                positions.append((index, checked.receipt))
            } catch {
                answers[index] = VoteIntake.error(error.prefixingField("ballots[\(index)]"))
            }
        }
        let submitted: VoteIngestor.Submitted
        do {
            submitted = try await self.ingestor.submitForReceipts(commands)
        } catch {
            throw VoteIntake.unavailable(error, retryAfter: self.settings.retryAfterSeconds)
        }
        // Stored ballots' answers are written straight into the body (no string per ballot); the
        // ballots refused before the commit keep the answer made then.
        var output = ByteBuffer()
        output.reserveCapacity(16 + 144 * answers.count)
        output.writeStaticString("{\"results\":[")
        var next = 0
        for index in answers.indices {
            if index > 0 { output.writeStaticString(",") }
            if let (status, json) = answers[index] {
                VoteIntake.write(status: status, json: json, into: &output)
                continue
            }
            let offset = next
            next += 1
            let ballot = submitted.receipts.isEmpty ? nil : submitted.receipts[submitted.receipts.startIndex + offset]
            self.intake.write(
                submitted.outcomes[offset], receipt: positions[offset].receipt, ballot: ballot, withStatus: true,
                into: &output)
        }
        output.writeStaticString("]}")
        return Response.json(.ok, output, headers: [.cacheControl: "no-store"])
    }

    /// A batch ballot's own event time, judged when the batch arrived: older than
    /// `analytics.allowedLatenessSeconds` it is stored and counted late; ahead of the server's
    /// clock by more than a second (or before 1970) it is refused.
    func castAt(_ castAt: Date, arrival: Date) throws(APIError) -> VoteCommand.CastAt {
        guard
            let judged = VoteCommand.CastAt(
                castAt: castAt, arrival: arrival, latenessSeconds: Int64(self.settings.allowedLatenessSeconds))
        else {
            throw .invalid(
                ValidationError(
                    field: "castAt",
                    "must be a time from 1970 up to when the batch arrives (at most 1 s ahead of the server's clock)"))
        }
        return judged
    }

    @Sendable func issueDeviceToken(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        try self.limits.deviceTokenFromAddress(self.limits.clientAddress(request, channel: context.channel))
        // The request is read whole first: one whose body cannot be parsed gets 400 from
        // HTTP1RequestGuard, and no token.
        do {
            _ = try await request.body.collect(upTo: self.settings.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(
                .contentTooLarge, .payloadTooLarge,
                "the request body is larger than \(self.settings.maxBodyBytes) bytes")
        }
        return Response.json(
            .created, "{\"token\":\"\(self.intake.signer.issueDeviceToken())\"}", headers: [.cacheControl: "no-store"])
    }

    static let notReady = APIError(.serviceUnavailable, .notReady, "the server is still loading", retryAfter: 1)
}

extension APIError {
    /// The same error with its field placed under `prefix` (for one ballot of a batch).
    func prefixingField(_ prefix: String) -> APIError {
        let field = self.field.map { "\(prefix).\($0)" } ?? prefix
        let message =
            self.field != nil && self.message.hasPrefix("\(self.field!):")
            ? "\(prefix)." + self.message : "\(prefix): " + self.message
        return APIError(self.status, self.code, message, field: field, retryAfter: self.retryAfter)
    }
}
