/// How a poll treats its voters and its results.
public struct PollSettings: Codable, Sendable, Equatable {
    /// Who may see the results, and when.
    public enum Visibility: String, Codable, Sendable, CaseIterable {
        /// Anyone, at any time.
        case `public`
        /// Those who voted (they present the receipt their vote returned).
        case afterVote = "after_vote"
        /// Anyone, once the poll is closed; before that only the number of ballots.
        case afterClose = "after_close"
        /// Only the number of ballots until the poll is revealed.
        case hiddenUntilReveal = "hidden_until_reveal"
    }

    /// What makes two ballots "the same voter".
    public enum Dedupe: String, Codable, Sendable, CaseIterable {
        /// An external voter id given by the embedding site (as pol.is `xid`).
        case voter
        /// A device token issued and signed by this server.
        case device
        /// No dedupe: every ballot counts (an `Idempotency-Key` still makes retries safe).
        case none
    }

    public var visibility: Visibility
    public var dedupe: Dedupe
    /// Whether a voter may replace their ballot; the tallies move, never double count.
    public var allowChange: Bool
    /// Origins (`https://example.com`, `http://localhost:3000`) allowed to call the voter
    /// endpoints from a browser; empty means any. Requests without an `Origin` (servers, apps)
    /// are not browsers and are not held to it.
    public var allowedOrigins: [String]
    /// How long shared caches and browsers may keep this poll's results; nil: the server's defaults.
    public var cache: ResultsCache?
    /// Vote attempts per voter on this poll; nil: the server's `ratelimit.votesPerVoter*`.
    public var voterLimit: VoterLimit?
    /// Voters must come with a token their poll's owner signed (a JWT naming the voter and the
    /// poll): the voter id is the token's, no client can invent one. Needs `dedupe: voter`.
    public var signedVoters: Bool

    public init(
        visibility: Visibility = .public,
        dedupe: Dedupe = .voter,
        allowChange: Bool = false,
        allowedOrigins: [String] = [],
        cache: ResultsCache? = nil,
        voterLimit: VoterLimit? = nil,
        signedVoters: Bool = false
    ) {
        self.visibility = visibility
        self.dedupe = dedupe
        self.allowChange = allowChange
        self.allowedOrigins = allowedOrigins
        self.cache = cache
        self.voterLimit = voterLimit
        self.signedVoters = signedVoters
    }

    enum CodingKeys: String, CodingKey {
        case visibility, dedupe, allowChange, allowedOrigins, cache, voterLimit, signedVoters
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.visibility = try container.decodeIfPresent(Visibility.self, forKey: .visibility) ?? .public
        self.dedupe = try container.decodeIfPresent(Dedupe.self, forKey: .dedupe) ?? .voter
        self.allowChange = try container.decodeIfPresent(Bool.self, forKey: .allowChange) ?? false
        self.allowedOrigins = try container.decodeIfPresent([String].self, forKey: .allowedOrigins) ?? []
        self.cache = try container.decodeIfPresent(ResultsCache.self, forKey: .cache)
        self.voterLimit = try container.decodeIfPresent(VoterLimit.self, forKey: .voterLimit)
        self.signedVoters = try container.decodeIfPresent(Bool.self, forKey: .signedVoters) ?? false
    }
}

/// Cache lifetimes of a poll's results, in seconds: `Cache-Control: public, max-age=…,
/// s-maxage=…, stale-while-revalidate=…`.
public struct ResultsCache: Codable, Sendable, Equatable {
    /// Browsers.
    public var maxAge: Int
    /// Shared caches: CDNs and proxies.
    public var sharedMaxAge: Int
    /// How long a shared cache may serve a stale copy while it fetches a fresh one.
    public var staleWhileRevalidate: Int

    public static let maxSeconds = 86_400

    public init(maxAge: Int = 1, sharedMaxAge: Int = 1, staleWhileRevalidate: Int = 5) {
        self.maxAge = maxAge
        self.sharedMaxAge = sharedMaxAge
        self.staleWhileRevalidate = staleWhileRevalidate
    }

    /// The `Cache-Control` value.
    public var cacheControl: String {
        "public, max-age=\(self.maxAge), s-maxage=\(self.sharedMaxAge), stale-while-revalidate=\(self.staleWhileRevalidate)"
    }
}

/// A poll's own rate limit on vote attempts per voter (GCRA): a sustained rate per second and a burst.
public struct VoterLimit: Codable, Sendable, Equatable {
    public var rate: Double
    public var burst: Int

    public init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = burst
    }
}
