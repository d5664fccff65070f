public import Hummingbird
public import NIOCore
import PollwireEngine

/// Per-request data: Hummingbird's core storage.
///
/// Kept small on purpose: it is built for every request. (Formatting the peer's address here
/// cost about 10% of a results read; it is read where needed, not stored.)
public struct PollwireRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection, for live streams that must close it when the viewer stops reading.
    public let channel: any Channel
    /// The API key a management request came with (set by `APIKeyMiddleware`).
    public var principal: Principal?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

extension PollwireRequestContext {
    /// The request's key, when it holds `scope`; 403 when it does not.
    func principal(_ scope: KeyScope) throws -> Principal {
        guard let principal else {
            throw APIError(.unauthorized, .unauthorized, "an API key is required: Authorization: Bearer <key>")
        }
        try principal.require(scope)
        return principal
    }
}
