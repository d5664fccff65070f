import Foundation
import HTTPTypes
import Hummingbird
import PollwireEngine

/// Lets a request through only with `Authorization: Bearer <api key>` of a stored key.
///
/// Keys are stored as SHA-256 digests; the lookup is one indexed read.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext
    let store: any PollStore
    let limits: EdgeLimits

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, .unauthorized, "an API key is required: Authorization: Bearer <key>")
        }
        let key = header.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces)
        let hash = APIKeys.hash(key)
        guard !key.isEmpty, key.utf8.count <= 256, try await self.store.apiKeyExists(hash: hash) else {
            throw APIError(.unauthorized, .unauthorized, "the API key is not valid")
        }
        try self.limits.management(keyHash: hash)
        return try await next(request, context)
    }
}
