public import PollwireEngine

/// Everything the HTTP application can be tuned by. Every field documents its default; the
/// executable reads them with swift-configuration (see docs/configuration.md).
public struct PollwireSettings: Sendable {
    /// Address to bind. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// Port to bind; 0 picks a free one. Default 8080.
    public var port: Int = 8080
    /// Largest request body for single requests (votes, poll definitions), bytes. Default 64 KiB.
    public var maxBodyBytes: Int = 64 * 1024
    /// Largest body of `POST /v1/votes:batch`, bytes. Default 4 MiB.
    public var maxBatchBodyBytes: Int = 4 * 1024 * 1024
    /// Most ballots in one batch request. Default 1000.
    public var maxBatchBallots: Int = 1000
    /// A request (head and body) must arrive within this time, or the connection is closed.
    /// Default 10 s.
    public var requestReadTimeout: Duration = .seconds(10)
    /// An idle keep-alive connection is closed after this time. Default 60 s.
    public var idleTimeout: Duration = .seconds(60)
    /// `max-age` of results responses, seconds. Default 1.
    public var resultsMaxAge: Int = 1
    /// `Retry-After` sent with 503 when the vote queue is full, seconds. Default 1.
    public var retryAfterSeconds: Int = 1
    /// Latest text answers kept per text question for results. Default 10.
    public var latestTextLimit: Int = 10
    /// Group commit tuning.
    public var ingest = VoteIngestor.Configuration()
    /// Live fan-out tuning.
    public var live = Hub.Configuration()

    public init() {}
}
