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

    /// The answer to an outcome: its status, its JSON written into `body` (with `"status"` in front
    /// of the fields when `withStatus`, as each entry of a batch's `results`). One writer for single
    /// votes and batches; no string per answer.
    ///
    /// A ballot stored now also gets its place in the poll's chain: `"ballot": {"hash", "position",
    /// "shard"}`, what `GET /v1/polls/{id}/proof?ballot=` takes.
    @discardableResult
    func write(
        _ outcome: VoteOutcome, receipt: String?, ballot: BallotReceipt?, withStatus: Bool,
        into body: inout ByteBuffer
    ) -> HTTPResponse.Status {
        let status: HTTPResponse.Status
        let fields: StaticString
        let version: Int64
        switch outcome {
        case .accepted(let stored, _): (status, fields, version) = (.created, "\"accepted\":true,\"version\":", stored)
        case .duplicate(let stored):
            (status, fields, version) = (.ok, "\"accepted\":true,\"duplicate\":true,\"version\":", stored)
        case .changed(let stored):
            (status, fields, version) = (.ok, "\"accepted\":true,\"changed\":true,\"version\":", stored)
        case .conflict:
            return Self.write(
                APIError(.conflict, .alreadyVoted, "this voter already voted, and the poll does not allow changes"),
                withStatus: withStatus, into: &body)
        case .idempotencyMismatch:
            return Self.write(
                APIError(
                    .unprocessableContent, .idempotencyKeyReused,
                    "this Idempotency-Key was used before with a different ballot"),
                withStatus: withStatus, into: &body)
        case .pollNotFound:
            return Self.write(.notFound("poll"), withStatus: withStatus, into: &body)
        case .pollNotOpen:
            return Self.write(
                APIError(.forbidden, .pollNotOpen, "the poll is not open for votes"), withStatus: withStatus,
                into: &body)
        }
        // One reservation for the whole answer: a write per field into a ByteBuffer costs more
        // than the fields (measured with 1000-ballot batches, where this runs per ballot).
        let bound =
            64 + fields.utf8CodeUnitCount + (receipt.map { 16 + $0.utf8.count } ?? 0) + (ballot == nil ? 0 : 160)
        body.write(reserving: bound) { out in
            out.write("{")
            if withStatus {
                out.write("\"status\":")
                out.write(decimal: Int64(status.code))
                out.write(",")
            }
            out.write(fields)
            out.write(decimal: version)
            if let receipt {
                out.write(",\"receipt\":\"")
                out.write(receipt)
                out.write("\"")
            }
            if let ballot {
                out.write(",\"ballot\":{\"hash\":\"")
                out.write(hex: ballot.hash)
                out.write("\",\"position\":")
                out.write(decimal: ballot.position)
                out.write(",\"shard\":")
                out.write(decimal: Int64(ballot.shard))
                out.write("}")
            }
            out.write("}")
        }
        return status
    }

    /// An error's JSON, with `"status"` in front of its fields when `withStatus`.
    static func write(_ error: APIError, withStatus: Bool, into body: inout ByteBuffer) -> HTTPResponse.Status {
        if withStatus {
            Self.write(status: error.status, json: error.json, into: &body)
        } else {
            body.writeString(error.json)
        }
        return error.status
    }

    /// An answer's JSON object with `"status"` in front of its fields.
    static func write(status: HTTPResponse.Status, json: String, into body: inout ByteBuffer) {
        body.writeStaticString("{\"status\":")
        ResultsJSON.writeInteger(Int64(status.code), to: &body)
        body.writeStaticString(",")
        body.writeBytes(json.utf8.dropFirst())
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
