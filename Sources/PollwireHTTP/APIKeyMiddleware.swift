import Foundation
import HTTPTypes
import Hummingbird
import PollwireCore
public import PollwireEngine

/// The key a management request came with, and the request's id for the audit log.
public final class Principal: Sendable {
    public let key: APIKeyRecord
    public let requestID: String

    init(key: APIKeyRecord, requestID: String) {
        self.key = key
        self.requestID = requestID
    }

    var owner: String { self.key.owner }
    var isOperator: Bool { self.key.scopes.contains(.operator) }

    /// 403 unless the key holds `scope`.
    func require(_ scope: KeyScope) throws(APIError) {
        guard self.key.scopes.contains(scope) else {
            throw APIError(.forbidden, .forbidden, "this API key lacks the \(scope.rawValue) scope")
        }
    }

    /// Whether the key's owner owns `poll`. Another owner's poll is answered as if it did not exist.
    func owns(_ poll: Poll) -> Bool { poll.owner == self.key.owner }

    /// An audit entry for an action this key takes now.
    func audit(
        _ action: String, at: Date, owner: String? = nil, poll: String? = nil, detail: String = "{}"
    )
        -> AuditEntry
    {
        AuditEntry(
            at: at, key: self.key.id, owner: owner ?? self.key.owner, requestID: self.requestID, action: action,
            poll: poll, detail: detail)
    }
}

/// Finds the stored key of `Authorization: Bearer <key>` and decides whether it may be used.
///
/// No cache: every request reads its key (one indexed read), so a revoke or an expiry holds on
/// every node of a cluster at once. Failed attempts count per client address; past the limit
/// the address gets 429 before any lookup.
struct KeyAuthenticator: Sendable {
    let store: any PollStore
    let limits: EdgeLimits
    let now: @Sendable () -> Date

    /// The key of `request`, or 401/429.
    func authenticate(_ request: Request, context: PollwireRequestContext) async throws -> APIKeyRecord {
        let address = self.limits.clientAddress(request, channel: context.channel)
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, .unauthorized, "an API key is required: Authorization: Bearer <key>")
        }
        try self.limits.invalidKeysAllowed(from: address)
        let secret = header.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces)
        let hash = APIKeys.hash(secret)
        let now = self.now()
        guard !secret.isEmpty, secret.utf8.count <= 256, let key = try await self.store.apiKey(hash: hash) else {
            try self.limits.invalidKey(from: address)
            throw APIError(.unauthorized, .unauthorized, "the API key is not valid")
        }
        if let refusal = key.refusal(at: now) {
            try self.limits.invalidKey(from: address)
            throw APIError(.unauthorized, .unauthorized, refusal)
        }
        try self.limits.management(keyHash: hash)
        // Last use to the minute: one write a minute per key at most.
        if key.lastUsedAt.map({ now.timeIntervalSince($0) >= 60 }) ?? true {
            try await self.store.touchAPIKey(id: key.id, at: now)
        }
        return key
    }
}

/// Lets a request through only with `Authorization: Bearer <api key>` of a stored, usable key,
/// and puts the key in the context (`context.principal(scope)` checks a route's scope).
///
/// Every answer carries `X-Request-Id`: the client's (when it is a short, plain token) or a new
/// one; the audit log records it with the action.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext
    let authenticator: KeyAuthenticator

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let requestID = Self.requestID(request.headers[.xRequestID])
        do {
            var context = context
            context.principal = Principal(
                key: try await self.authenticator.authenticate(request, context: context), requestID: requestID)
            var response = try await next(request, context)
            response.headers[.xRequestID] = requestID
            return response
        } catch let error as APIError {
            var headers = error.headers
            headers[.xRequestID] = requestID
            throw APIError(
                error.status, error.code, error.message, field: error.field, retryAfter: error.retryAfter,
                headers: headers)
        }
    }

    /// The client's request id when it is 1 to 64 letters, digits, `-`, `_` or `.`; else a new one.
    static func requestID(_ given: String?) -> String {
        if let given, (1...64).contains(given.utf8.count),
            given.utf8.allSatisfy({ $0 < 128 && (isalnum(Int32($0)) != 0 || $0 == 45 || $0 == 95 || $0 == 46) })
        {
            return given
        }
        return Identifier.random(length: 20)
    }
}

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
}
