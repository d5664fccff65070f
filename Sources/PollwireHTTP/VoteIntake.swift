import Foundation
import HTTPTypes
import NIOCore
import PollwireCore
import PollwireEngine

/// Turns a voter's request into a `VoteCommand` (validation and identity), and an outcome
/// into the answer the voter gets. Shared by single votes and batches.
struct VoteIntake: Sendable {
    let book: TallyBook
    let signer: Signer
    let now: @Sendable () -> Date

    static let maxVoterLength = 256
    static let maxIdempotencyKeyLength = 255

    /// A validated vote, and the receipt its answer carries (for `after_vote` polls).
    struct Checked {
        var command: VoteCommand
        var receipt: String?
    }

    /// Validates a ballot for `pollID`. Throws the error the client sees.
    ///
    /// Reads the poll once: the receipt for the answer is decided here too, not looked up again.
    func command(
        pollID: String, voter: String?, device: String?, idempotencyKey: String?, answers: [String: Answer]
    ) throws(APIError) -> Checked {
        try self.command(
            pollID: pollID, poll: self.book.poll(pollID), voter: voter, device: device,
            idempotencyKey: idempotencyKey, answers: answers)
    }

    /// The same, for a caller that already looked the poll up (nil: it does not exist).
    /// `now`, when given, is the time the poll's phase is judged at (a batch reads the clock once).
    func command(
        pollID: String, poll: Poll?, voter: String?, device: String?, idempotencyKey: String?,
        answers: [String: Answer], at now: Date? = nil
    ) throws(APIError) -> Checked {
        guard let poll else { throw .notFound("poll") }
        guard poll.phase(at: now ?? self.now()) == .open else {
            throw APIError(.forbidden, .pollNotOpen, "the poll is not open for votes")
        }
        if let idempotencyKey, idempotencyKey.isEmpty || idempotencyKey.utf8.count > Self.maxIdempotencyKeyLength {
            throw APIError(
                .badRequest, .badRequest, "Idempotency-Key must be 1 to \(Self.maxIdempotencyKeyLength) bytes")
        }
        let identity: String?
        switch poll.settings.dedupe {
        case .voter:
            // An external voter id, or else a device token: a browser on a page that names no voter
            // (the widget's default) is one voter per device, as on a `device` poll.
            if voter == nil || voter?.isEmpty == true, let device, !device.isEmpty {
                identity = try self.deviceIdentity(device)
                break
            }
            guard let voter, !voter.isEmpty else {
                throw .invalid(
                    ValidationError(
                        field: "voter",
                        "is required: this poll counts one ballot per voter (or send a device token from POST /v1/device-tokens)"
                    ))
            }
            guard voter.utf8.count <= Self.maxVoterLength else {
                throw .invalid(ValidationError(field: "voter", "must be at most \(Self.maxVoterLength) bytes"))
            }
            identity = "v:" + voter
        case .device:
            guard let device, !device.isEmpty else {
                throw .invalid(
                    ValidationError(field: "device", "is required: get a token from POST /v1/device-tokens"))
            }
            identity = try self.deviceIdentity(device)
        case .none:
            identity = nil
        }
        let ballot: Ballot
        do {
            ballot = try poll.ballot(answers: answers)
        } catch {
            throw .invalid(error)
        }
        let command = VoteCommand(
            pollID: pollID, voter: identity, idempotencyKey: idempotencyKey, ballot: ballot,
            allowChange: poll.settings.allowChange)
        let receipt = poll.settings.visibility == .afterVote ? self.signer.receipt(pollID: pollID) : nil
        return Checked(command: command, receipt: receipt)
    }

    /// The dedupe key of a device token this server signed (`d:<device id>`).
    private func deviceIdentity(_ token: String) throws(APIError) -> String {
        guard let id = self.signer.deviceID(of: token) else {
            throw APIError(.forbidden, .forbidden, "the device token is not valid", field: "device")
        }
        return "d:" + id
    }

    /// The status and JSON body for an outcome.
    ///
    /// A ballot stored now also gets its place in the poll's chain: `"ballot": {"hash", "position",
    /// "shard"}`, what `GET /v1/polls/{id}/proof?ballot=` takes.
    func answer(
        to outcome: VoteOutcome, receipt: String?, ballot: BallotReceipt? = nil
    ) -> (HTTPResponse.Status, String) {
        var receipt = receipt.map { ",\"receipt\":\"\($0)\"" } ?? ""
        if let ballot { Self.appendBallot(ballot, to: &receipt) }
        switch outcome {
        case .accepted(let version, _):
            return (.created, "{\"accepted\":true,\"version\":\(version)\(receipt)}")
        case .duplicate(let version):
            return (.ok, "{\"accepted\":true,\"duplicate\":true,\"version\":\(version)\(receipt)}")
        case .changed(let version):
            return (.ok, "{\"accepted\":true,\"changed\":true,\"version\":\(version)\(receipt)}")
        case .conflict:
            return Self.error(
                APIError(.conflict, .alreadyVoted, "this voter already voted, and the poll does not allow changes"))
        case .idempotencyMismatch:
            return Self.error(
                APIError(
                    .unprocessableContent, .idempotencyKeyReused,
                    "this Idempotency-Key was used before with a different ballot"))
        case .pollNotFound:
            return Self.error(.notFound("poll"))
        case .pollNotOpen:
            return Self.error(APIError(.forbidden, .pollNotOpen, "the poll is not open for votes"))
        }
    }

    /// `answer(to:receipt:ballot:)` with its status in front (`{"status": 201, ...}`), written into
    /// `body`: a batch's answers without a string per ballot.
    func writeAnswer(to outcome: VoteOutcome, receipt: String?, ballot: BallotReceipt?, into body: inout ByteBuffer) {
        let version: Int64
        switch outcome {
        case .accepted(let stored, _):
            body.writeStaticString("{\"status\":201,\"accepted\":true,\"version\":")
            version = stored
        case .duplicate(let stored):
            body.writeStaticString("{\"status\":200,\"accepted\":true,\"duplicate\":true,\"version\":")
            version = stored
        case .changed(let stored):
            body.writeStaticString("{\"status\":200,\"accepted\":true,\"changed\":true,\"version\":")
            version = stored
        default:
            let (status, json) = self.answer(to: outcome, receipt: receipt)
            Self.write(status: status, json: json, into: &body)
            return
        }
        ResultsJSON.writeInteger(version, to: &body)
        if let receipt {
            body.writeStaticString(",\"receipt\":\"")
            body.writeString(receipt)
            body.writeStaticString("\"")
        }
        if let ballot {
            body.writeStaticString(",\"ballot\":{\"hash\":\"")
            ballot.hash.writeHex(to: &body)
            body.writeStaticString("\",\"position\":")
            ResultsJSON.writeInteger(ballot.position, to: &body)
            body.writeStaticString(",\"shard\":")
            ResultsJSON.writeInteger(Int64(ballot.shard), to: &body)
            body.writeStaticString("}")
        }
        body.writeStaticString("}")
    }

    /// An answer's JSON object with `"status"` in front of its fields.
    static func write(status: HTTPResponse.Status, json: String, into body: inout ByteBuffer) {
        body.writeStaticString("{\"status\":")
        ResultsJSON.writeInteger(Int64(status.code), to: &body)
        body.writeStaticString(",")
        body.writeBytes(json.utf8.dropFirst())
    }

    /// `,"ballot":{"hash":"...","position":N,"shard":S}`
    static func appendBallot(_ ballot: BallotReceipt, to text: inout String) {
        text.append(",\"ballot\":{\"hash\":\"")
        ballot.hash.appendHex(to: &text)
        text.append("\",\"position\":")
        text.append(String(ballot.position))
        text.append(",\"shard\":")
        text.append(String(ballot.shard))
        text.append("}")
    }

    static func error(_ error: APIError) -> (HTTPResponse.Status, String) {
        (error.status, error.json)
    }

    /// Maps an ingest failure to 503 with Retry-After.
    static func unavailable(_ error: IngestError, retryAfter: Int) -> APIError {
        switch error.code {
        case .overloaded:
            APIError(.serviceUnavailable, .overloaded, error.message, retryAfter: retryAfter)
        case .shuttingDown:
            APIError(.serviceUnavailable, .shuttingDown, error.message, retryAfter: retryAfter)
        case .storeUnavailable:
            APIError(.serviceUnavailable, .storeUnavailable, error.message, retryAfter: retryAfter)
        default:
            APIError(.serviceUnavailable, .storageFailure, error.message, retryAfter: retryAfter)
        }
    }
}
