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
    /// Rate limits.
    public var rateLimits = RateLimitSettings()

    public init() {}
}

/// Rate limits (GCRA), per route family and key. A rule with rate 0 is off.
public struct RateLimitSettings: Sendable {
    /// Votes per client IP address. Generous, because offices and schools share one address:
    /// it is a cooldown against floods, not a ban, and dedupe never relies on the address.
    /// Default 50/s, burst 500.
    public var votesPerIP = RateLimiter.Rule(rate: 50, burst: 500)
    /// Vote attempts per poll and voter (voter id or device). Default 1/s, burst 5.
    public var votesPerVoter = RateLimiter.Rule(rate: 1, burst: 5)
    /// Device tokens issued per client IP address. Default 2/s, burst 20.
    public var deviceTokensPerIP = RateLimiter.Rule(rate: 2, burst: 20)
    /// Management requests per API key. Default 100/s, burst 200.
    public var managementPerKey = RateLimiter.Rule(rate: 100, burst: 200)
    /// Client addresses that skip the per-IP limits. Default none.
    public var allowList: Set<String> = []
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else it is ignored. Default none.
    public var trustedProxies: Set<String> = []
    /// Most keys remembered; beyond it keys at rest are forgotten first. Default 1,000,000.
    public var capacity = 1_000_000

    public init() {}
}
