public import Hummingbird
public import NIOCore

/// Per-request data: Hummingbird's core storage.
///
/// Kept small on purpose: it is built for every request. (Formatting the peer's address here
/// cost about 10% of a results read; it is read where needed, not stored.)
public struct PollwireRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection, for live streams that must close it when the viewer stops reading.
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
