public import Hummingbird
import NIOCore

/// Per-request data: Hummingbird's core storage and the peer's address.
public struct PollwireRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's IP address as the socket saw it (no proxy headers are trusted here).
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }
}
