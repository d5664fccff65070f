public import Foundation
import HTTPTypes
import Hummingbird
import PollwireCore
public import PollwireEngine

/// API keys (admin scope: the key's own owner; operator: any owner) and owners (operator).
///
/// `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}`, `POST /v1/owners`, `GET /v1/owners`.
/// A key's secret is shown once, in the answer that creates it; only its SHA-256 is stored.
struct KeysController {
    let store: any PollStore
    let settings: PollwireSettings
    let now: @Sendable () -> Date

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.post("/keys", use: self.create)
        group.get("/keys", use: self.list)
        group.delete("/keys/{id}", use: self.revoke)
        group.post("/owners", use: self.createOwner)
        group.get("/owners", use: self.listOwners)
    }

    struct CreateKey: Decodable {
        var name: String?
        var scopes: [String]?
        var owner: String?
        var expiresAt: Date?
    }

    @Sendable func create(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let body = try await request.decodeJSON(CreateKey.self, limit: self.settings.maxBodyBytes)
        let owner = try self.owner(body.owner, for: principal)
        var scopes = KeyScope.ownerDefault
        if let words = body.scopes {
            guard !words.isEmpty else { throw APIError.invalid(ValidationError(field: "scopes", "must name a scope")) }
            scopes = try Self.scopes(words.joined(separator: ","), field: "scopes")
        }
        // A key grants only what it holds itself.
        if let missing = KeyScope.allCases.first(where: { scopes.contains($0) && !principal.key.scopes.contains($0) }) {
            throw APIError(.forbidden, .forbidden, "this API key cannot grant the \(missing.rawValue) scope it lacks")
        }
        let now = self.now()
        if let expiresAt = body.expiresAt, expiresAt <= now {
            throw APIError.invalid(ValidationError(field: "expiresAt", "must be in the future"))
        }
        let name = body.name ?? "api key"
        guard (1...200).contains(name.count) else {
            throw APIError.invalid(ValidationError(field: "name", "must be 1 to 200 characters"))
        }
        let (secret, key) = APIKeys.make(owner: owner, name: name, scopes: scopes, expiresAt: body.expiresAt, at: now)
        do {
            try await self.store.insertAPIKey(
                key, hash: APIKeys.hash(secret),
                audit: principal.audit("key.create", at: now, owner: owner, detail: APIKeys.detail(key)))
        } catch AccessError.unknownOwner {
            throw APIError.notFound("owner")
        }
        var text = "{\"secret\":"
        JSONText.appendQuoted(secret, to: &text)
        text += "," + APIKeys.json(key).dropFirst()
        return Response.json(.created, text, headers: [.cacheControl: "no-store"])
    }

    @Sendable func list(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let owner = try self.owner(request.uri.queryParameters.get("owner"), for: principal)
        let keys = try await self.store.apiKeys(owner: owner)
        return Response.json(
            .ok, "{\"keys\":[" + keys.map(APIKeys.json).joined(separator: ",") + "]}",
            headers: [.cacheControl: "no-store"])
    }

    @Sendable func revoke(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let id = try context.parameters.require("id")
        let now = self.now()
        // An operator revokes any owner's key; an admin only its own owner's.
        let owner = principal.isOperator ? nil : principal.owner
        let keys = try await self.store.apiKeys(owner: owner)
        guard let key = keys.first(where: { $0.id == id }) else { throw APIError.notFound("key") }
        let audit = principal.audit("key.revoke", at: now, owner: key.owner, detail: APIKeys.detail(key))
        guard try await self.store.revokeAPIKey(id: id, owner: owner, at: now, audit: audit) else {
            throw APIError.notFound("key")
        }
        return Response(status: .noContent, headers: [.cacheControl: "no-store"])
    }

    struct CreateOwner: Decodable {
        var id: String?
        var name: String
    }

    @Sendable func createOwner(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.operator)
        let body = try await request.decodeJSON(CreateOwner.self, limit: self.settings.maxBodyBytes)
        let id = body.id ?? Identifier.random()
        guard OwnerIDs.isValidID(id) else {
            throw APIError.invalid(ValidationError(field: "id", OwnerIDs.idRule))
        }
        guard (1...200).contains(body.name.count) else {
            throw APIError.invalid(ValidationError(field: "name", "must be 1 to 200 characters"))
        }
        let owner = OwnerRecord(id: id, name: body.name, createdAt: self.now())
        var detail = "{\"name\":"
        JSONText.appendQuoted(owner.name, to: &detail)
        detail += "}"
        guard
            try await self.store.insertOwner(
                owner, audit: principal.audit("owner.create", at: owner.createdAt, owner: id, detail: detail))
        else { throw APIError(.conflict, .conflict, "an owner with this id exists") }
        return Response.json(.created, OwnerIDs.json(owner), headers: [.location: "/v1/owners/\(id)"])
    }

    @Sendable func listOwners(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        _ = try context.principal(.operator)
        let owners = try await self.store.owners()
        return Response.json(
            .ok, "{\"owners\":[" + owners.map(OwnerIDs.json).joined(separator: ",") + "]}",
            headers: [.cacheControl: "no-store"])
    }

    /// The owner a request names (its key's own when it names none); another owner's only for an operator.
    func owner(_ named: String?, for principal: Principal) throws -> String {
        guard let named, named != principal.owner else { return principal.owner }
        guard principal.isOperator else {
            throw APIError(.forbidden, .forbidden, "only an operator key manages another owner's keys")
        }
        return named
    }

    static func scopes(_ text: String, field: String) throws -> Set<KeyScope> {
        switch KeyScope.parse(text) {
        case .success(let scopes): return scopes
        case .failure(let error): throw APIError.invalid(ValidationError(field: field, error.description))
        }
    }
}

/// Owner ids: what the API and the command line accept.
public enum OwnerIDs {
    public static let idRule = "must be 1 to 64 letters, digits, - or _"

    public static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { $0 < 128 && (isalnum(Int32($0)) != 0 || $0 == 45 || $0 == 95) }
    }

    static func json(_ owner: OwnerRecord) -> String {
        var text = "{\"id\":"
        JSONText.appendQuoted(owner.id, to: &text)
        text += ",\"name\":"
        JSONText.appendQuoted(owner.name, to: &text)
        text += ",\"createdAt\":"
        JSONText.appendQuoted(owner.createdAt.formatted(.iso8601), to: &text)
        return text + "}"
    }
}

extension APIKeys {
    /// A new key: its secret (shown once) and its record (stored with the secret's hash).
    public static func make(
        owner: String, name: String, scopes: Set<KeyScope>, expiresAt: Date?, at now: Date
    ) -> (secret: String, key: APIKeyRecord) {
        let key = APIKeyRecord(
            id: "key_" + Identifier.random(length: 16), owner: owner, name: name, scopes: scopes, createdAt: now,
            expiresAt: expiresAt)
        return (Self.generate(), key)
    }

    /// A key as the API shows it (never its secret or hash).
    public static func json(_ key: APIKeyRecord) -> String {
        func date(_ date: Date?, _ text: inout String) {
            if let date { JSONText.appendQuoted(date.formatted(.iso8601), to: &text) } else { text += "null" }
        }
        var text = "{\"id\":"
        JSONText.appendQuoted(key.id, to: &text)
        text += ",\"owner\":"
        JSONText.appendQuoted(key.owner, to: &text)
        text += ",\"name\":"
        JSONText.appendQuoted(key.name, to: &text)
        text += ",\"scopes\":[" + key.scopes.sorted().map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]"
        text += ",\"createdAt\":"
        date(key.createdAt, &text)
        text += ",\"expiresAt\":"
        date(key.expiresAt, &text)
        text += ",\"lastUsedAt\":"
        date(key.lastUsedAt, &text)
        text += ",\"revokedAt\":"
        date(key.revokedAt, &text)
        return text + "}"
    }

    /// What the audit log keeps of a key: its id, name, scopes and expiry.
    public static func detail(_ key: APIKeyRecord) -> String {
        var text = "{\"id\":"
        JSONText.appendQuoted(key.id, to: &text)
        text += ",\"name\":"
        JSONText.appendQuoted(key.name, to: &text)
        text += ",\"scopes\":[" + key.scopes.sorted().map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]"
        text += ",\"expiresAt\":"
        if let expiresAt = key.expiresAt {
            JSONText.appendQuoted(expiresAt.formatted(.iso8601), to: &text)
        } else {
            text += "null"
        }
        return text + "}"
    }
}
