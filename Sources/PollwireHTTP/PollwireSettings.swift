public import PollwireCore
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
    /// Cache lifetimes of results when a poll names none. Default `max-age=1, s-maxage=1,
    /// stale-while-revalidate=5`.
    public var resultsCache = ResultsCache()
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
    /// Admission control: requests in flight at once.
    public var admission = AdmissionSettings()
    /// Purge requests to a CDN or proxy when results change. Off by default.
    public var purge = PurgeSettings()
    /// Response compression.
    public var compression = CompressionSettings()
    /// TLS (with HTTP/2 by ALPN). Off by default: plain HTTP/1.1 and h2c.
    public var tls: TLSSettings?
    /// Whether a plain connection may speak HTTP/2 with prior knowledge (h2c), and a TLS one
    /// may choose h2 by ALPN. Default true.
    public var http2 = true
    /// Directory of the web face (widget, presenter page, dashboard); nil serves none.
    public var webDirectory: String?
    /// The window widths timelines come in (`analytics.windows`, `Timeline.seconds(ofWidth:)`);
    /// the default window is `10s` when listed, else the first.
    public var timelineWindows = ["1s", "10s", "1m", "5m", "1h"]
    /// How old a batch ballot's `castAt` may be when it arrives and still count in its window
    /// (`analytics.allowedLatenessSeconds`); older ones count in the `late` total. Windows
    /// that ended longer ago than this are final. Default 60.
    public var allowedLatenessSeconds = 60

    public init() {}
}

/// Admission control: beyond these, a request is refused with 503 and `Retry-After` before
/// any work is done for it. Health, readiness and metrics are never refused.
public struct AdmissionSettings: Sendable {
    /// Voter requests (votes, results, device tokens, live, poll definitions) in flight at
    /// once. Default 2048.
    public var maxInFlight = 2048
    /// Management requests (those with an API key) in flight at once: their own pool, so a
    /// vote flood cannot lock the owners out. Default 64.
    public var maxManagementInFlight = 64
    /// `Retry-After` of the 503, seconds. Default 1.
    public var retryAfterSeconds = 1
    /// The most the event loops may run late (milliseconds) before the voters' cap in force
    /// narrows below `maxInFlight` (see `Admission`); 0 keeps the cap fixed. Default 10.
    public var maxLoopDelayMs = 10.0

    public init() {}
}

/// Purge requests, sent when a poll's results change, coalesced: at most one per poll per
/// `interval`. `url` names the poll with `{poll}`, e.g. `http://cdn.internal/v1/polls/{poll}/results`.
public struct PurgeSettings: Sendable {
    /// Where to send them; nil: off. Default nil.
    public var url: String?
    /// `PURGE` (nginx cache purge, Fastly, Varnish with a purge rule) or `BAN` (Varnish). Default PURGE.
    public var method = "PURGE"
    /// Most one request per poll per this interval. Default 1 s.
    public var interval: Duration = .seconds(1)
    /// Most polls waiting for a purge; beyond it changes are dropped (and counted). Default 10,000.
    public var maxPending = 10_000

    public init() {}
}

/// gzip or deflate for JSON and CSV bodies, by `Accept-Encoding`.
public struct CompressionSettings: Sendable {
    /// Smallest body compressed, bytes; smaller bodies go as they are. 0 turns compression off.
    /// Default 1024.
    public var minimumBytes = 1024
    /// permessage-deflate (RFC 7692) on live WebSockets when the client offers it. Default
    /// false: on loopback and LANs it costs more CPU than it saves (docs/benchmarks.md).
    public var webSocketDeflate = false

    public init() {}
}

/// Certificate and key, PEM files.
public struct TLSSettings: Sendable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
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
    /// Missing, revoked or expired API keys presented per client address. Default 1/s, burst 20.
    public var invalidKeysPerIP = RateLimiter.Rule(rate: 1, burst: 20)
    /// Timelines (`GET /v1/polls/{id}/timeline`, a read of the poll's window counts from the
    /// store) per client address.
    public var timelinesPerIP = RateLimiter.Rule(rate: 5, burst: 50)
    /// Ballot proofs (`GET /v1/polls/{id}/proof`, a read of the poll's chain) per client address.
    /// Default 1/s, burst 10.
    public var proofsPerIP = RateLimiter.Rule(rate: 1, burst: 10)
    /// Client addresses that skip the per-IP limits. Default none.
    public var allowList: Set<String> = []
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else it is ignored. Default none.
    public var trustedProxies: Set<String> = []
    /// Most keys remembered; beyond it keys at rest are forgotten first. Default 1,000,000.
    public var capacity = 1_000_000

    public init() {}
}
