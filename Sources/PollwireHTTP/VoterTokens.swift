import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import PollwireCore
import PollwireEngine
import Synchronization

/// Voter ids signed by the embedding site, for polls with `signedVoters`: a JWT (HS256 or ES256,
/// verified by jwt-kit) with `sub` (the voter id), `poll` (the poll's id, or `*` for any of the
/// owner's polls) and `exp`, sent as `Pollwire-Voter-Token`. The owner registers the keys
/// (`/v1/voter-keys`); each node reads an owner's keys again when its copy is a second old.
final class VoterTokens: Sendable {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var poll: String

        func verify(using algorithm: some JWTAlgorithm) throws {
            try self.exp.verifyNotExpired()
        }
    }

    private struct Entry {
        var loaded: ContinuousClock.Instant
        var keys: JWTKeyCollection
        var count: Int
    }

    private let store: any PollStore
    private let cache = Mutex<[String: Entry]>([:])
    /// How long a node uses an owner's keys before reading them again.
    static let freshness: Duration = .seconds(1)
    /// Owners whose keys are held at once; beyond it the cache starts again.
    static let capacity = 10_000

    init(store: any PollStore) {
        self.store = store
    }

    /// The voter id a poll with `signedVoters` takes from `token`; 401 or 403 in the API's shape.
    func voter(token: String?, poll: Poll) async throws(APIError) -> String {
        guard let token, !token.isEmpty else {
            throw APIError(
                .unauthorized, .voterTokenRequired,
                "this poll takes signed voters only: send the token the site signed as Pollwire-Voter-Token")
        }
        let invalid = APIError(.unauthorized, .voterTokenInvalid, "the voter token is not valid")
        guard token.utf8.count <= 4096 else { throw invalid }
        let entry: Entry
        do {
            entry = try await self.keys(owner: poll.owner)
        } catch {
            throw APIError(.serviceUnavailable, .storeUnavailable, "the voter-token keys cannot be read", retryAfter: 1)
        }
        guard entry.count > 0 else { throw invalid }
        let claims: Claims
        do {
            claims = try await entry.keys.verify(token, as: Claims.self, iteratingKeys: true)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw APIError(.unauthorized, .voterTokenExpired, "the voter token has expired")
        } catch {
            throw invalid
        }
        guard claims.poll == poll.id || claims.poll == "*" else {
            throw APIError(.forbidden, .voterTokenWrongPoll, "the voter token is for another poll")
        }
        let voter = claims.sub.value
        guard !voter.isEmpty, voter.utf8.count <= VoteIntake.maxVoterLength else {
            throw APIError.invalid(
                ValidationError(field: "voter", "the token's sub must be 1 to \(VoteIntake.maxVoterLength) bytes"))
        }
        return voter
    }

    private func keys(owner: String) async throws -> Entry {
        let now = ContinuousClock.now
        if let entry = self.cache.withLock({ $0[owner] }), now - entry.loaded < Self.freshness { return entry }
        let records = try await self.store.voterKeys(owner: owner)
        let keys = JWTKeyCollection()
        var count = 0
        for record in records {
            let kid = JWKIdentifier(string: record.id)
            switch record.algorithm {
            case .hs256:
                await keys.add(hmac: HMACKey(from: record.material), digestAlgorithm: .sha256, kid: kid)
            case .es256:
                // Checked when registered; a key that no longer parses is left out.
                guard let key = try? ES256PublicKey(pem: record.material) else { continue }
                await keys.add(ecdsa: key, kid: kid)
            }
            count += 1
        }
        let entry = Entry(loaded: now, keys: keys, count: count)
        self.cache.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll() }
            cache[owner] = entry
        }
        return entry
    }

    /// Whether `material` is a usable key of `algorithm` (checked when an owner registers it).
    static func check(_ algorithm: VoterKeyRecord.Algorithm, material: String) -> String? {
        switch algorithm {
        case .hs256:
            return material.utf8.count >= 32 ? nil : "an HS256 secret must be at least 32 bytes"
        case .es256:
            return (try? ES256PublicKey(pem: material)) != nil ? nil : "must be a P-256 public key in PEM"
        }
    }
}

extension APIError.Code {
    public static let voterTokenRequired = Self("voter_token_required")
    public static let voterTokenInvalid = Self("voter_token_invalid")
    public static let voterTokenExpired = Self("voter_token_expired")
    public static let voterTokenWrongPoll = Self("voter_token_wrong_poll")
}

extension HTTPField.Name {
    static let pollwireVoterToken = HTTPField.Name("Pollwire-Voter-Token")!
}

/// `POST /v1/voter-keys`, `GET /v1/voter-keys`, `DELETE /v1/voter-keys/{id}` (admin scope): the keys
/// an owner's site signs voter tokens with.
struct VoterKeysController {
    let store: any PollStore
    let settings: PollwireSettings
    let now: @Sendable () -> Date

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.post("/voter-keys", use: self.create)
        group.get("/voter-keys", use: self.list)
        group.delete("/voter-keys/{id}", use: self.delete)
    }

    struct Create: Decodable {
        var algorithm: String
        /// HS256: the shared secret (at least 32 bytes).
        var secret: String?
        /// ES256: the P-256 public key, PEM.
        var publicKey: String?
    }

    @Sendable func create(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let body = try await request.decodeJSON(Create.self, limit: self.settings.maxBodyBytes)
        guard let algorithm = VoterKeyRecord.Algorithm(rawValue: body.algorithm) else {
            throw APIError.invalid(ValidationError(field: "algorithm", "must be HS256 or ES256"))
        }
        let field = algorithm == .hs256 ? "secret" : "publicKey"
        guard let material = algorithm == .hs256 ? body.secret : body.publicKey else {
            throw APIError.invalid(ValidationError(field: field, "is required for \(algorithm.rawValue)"))
        }
        if let problem = VoterTokens.check(algorithm, material: material) {
            throw APIError.invalid(ValidationError(field: field, problem))
        }
        let key = VoterKeyRecord(
            id: "vk_" + Identifier.random(length: 16), owner: principal.owner, algorithm: algorithm,
            material: material, createdAt: self.now())
        try await self.store.insertVoterKey(
            key,
            audit: principal.audit(
                "voter-key.create", at: key.createdAt,
                detail: "{\"id\":\"\(key.id)\",\"algorithm\":\"\(algorithm.rawValue)\"}"
            ))
        return Response.json(.created, Self.json(key), headers: [.cacheControl: "no-store"])
    }

    @Sendable func list(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let keys = try await self.store.voterKeys(owner: principal.owner)
        return Response.json(
            .ok, "{\"voterKeys\":[" + keys.map(Self.json).joined(separator: ",") + "]}",
            headers: [.cacheControl: "no-store"])
    }

    @Sendable func delete(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let id = try context.parameters.require("id")
        var detail = "{\"id\":"
        JSONText.appendQuoted(id, to: &detail)
        detail += "}"
        guard
            try await self.store.deleteVoterKey(
                id: id, owner: principal.owner,
                audit: principal.audit("voter-key.delete", at: self.now(), detail: detail))
        else { throw APIError.notFound("voter key") }
        return Response(status: .noContent, headers: [.cacheControl: "no-store"])
    }

    /// A key as the API shows it: never an HS256 secret; an ES256 public key in full.
    static func json(_ key: VoterKeyRecord) -> String {
        var text = "{\"id\":"
        JSONText.appendQuoted(key.id, to: &text)
        text += ",\"algorithm\":\"\(key.algorithm.rawValue)\""
        if key.algorithm == .es256 {
            text += ",\"publicKey\":"
            JSONText.appendQuoted(key.material, to: &text)
        }
        text += ",\"createdAt\":"
        JSONText.appendQuoted(key.createdAt.formatted(.iso8601), to: &text)
        return text + "}"
    }
}
