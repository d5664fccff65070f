import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import PollwireCore
import PollwireEngine

/// The rate limits of the API, over one `RateLimiter`: which key each limit uses, the client
/// address (X-Forwarded-For only from trusted proxies), and the 429 a refusal becomes.
///
/// Headers follow draft-ietf-httpapi-ratelimit-headers-10: `RateLimit-Policy: "<name>";q=<burst>;w=<seconds>`
/// and `RateLimit: "<name>";r=<remaining>;t=<seconds>`, with an integer `Retry-After`.
struct EdgeLimits: Sendable {
    let limiter: RateLimiter
    let settings: RateLimitSettings
    let limited: Counter

    init(settings: RateLimitSettings, factory: any MetricsFactory) {
        self.limiter = RateLimiter(capacity: settings.capacity)
        self.settings = settings
        self.limited = Counter(label: "pollwire_ratelimit_limited_total", factory: factory)
    }

    /// The client's address: the socket peer, or, when the peer is a trusted proxy, the
    /// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
    func clientAddress(_ request: Request, channel: any Channel) -> String {
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        guard self.settings.trustedProxies.contains(peer), let forwarded = request.headers[.xForwardedFor] else {
            return peer
        }
        let hops = forwarded.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return hops.last { !self.settings.trustedProxies.contains($0) && !$0.isEmpty } ?? peer
    }

    /// Counts a vote from `address` (skipped for allow-listed addresses).
    func voteFromAddress(_ address: String) throws(APIError) {
        guard !self.settings.allowList.contains(address) else { return }
        try self.check("votes-ip", key: "v-ip:" + address, rule: self.settings.votesPerIP)
    }

    /// Counts a vote attempt by one voter on one poll.
    func voteByVoter(_ voter: String, poll: String, limit: VoterLimit? = nil) throws(APIError) {
        let rule = limit.map { RateLimiter.Rule(rate: $0.rate, burst: $0.burst) } ?? self.settings.votesPerVoter
        try self.check("votes-voter", key: "v-voter:\(poll)\u{1f}\(voter)", rule: rule)
    }

    func deviceTokenFromAddress(_ address: String) throws(APIError) {
        try self.fromAddress(address, "device-tokens", prefix: "dt-ip:", rule: self.settings.deviceTokensPerIP)
    }

    func management(keyHash: String) throws(APIError) {
        try self.check("management", key: "key:" + keyHash, rule: self.settings.managementPerKey)
    }

    /// Counts a timeline asked from `address`.
    func timelineFromAddress(_ address: String) throws(APIError) {
        try self.fromAddress(address, "timelines", prefix: "timeline-ip:", rule: self.settings.timelinesPerIP)
    }

    /// Counts a ballot proof asked from `address`.
    func proofFromAddress(_ address: String) throws(APIError) {
        try self.fromAddress(address, "proofs", prefix: "proof-ip:", rule: self.settings.proofsPerIP)
    }

    /// Counts one request of `name` from `address` (addresses on the allow list are not counted).
    private func fromAddress(
        _ address: String, _ name: String, prefix: String, rule: RateLimiter.Rule
    ) throws(APIError) {
        guard !self.settings.allowList.contains(address) else { return }
        try self.check(name, key: prefix + address, rule: rule)
    }

    /// 429 when `address` has spent its invalid-key attempts (checked before a key lookup).
    func invalidKeysAllowed(from address: String) throws(APIError) {
        guard !self.settings.allowList.contains(address) else { return }
        let rule = self.settings.invalidKeysPerIP
        if let retryAfter = self.limiter.wouldLimit("bad-key:" + address, rule: rule) {
            throw self.refusal("invalid-keys", rule: rule, retryAfter: retryAfter)
        }
    }

    /// Counts a missing, revoked or expired key presented from `address`.
    func invalidKey(from address: String) throws(APIError) {
        guard !self.settings.allowList.contains(address) else { return }
        try self.check("invalid-keys", key: "bad-key:" + address, rule: self.settings.invalidKeysPerIP)
    }

    private func check(_ name: String, key: String, rule: RateLimiter.Rule) throws(APIError) {
        guard case .limited(let retryAfter) = self.limiter.check(key, rule: rule) else { return }
        throw self.refusal(name, rule: rule, retryAfter: retryAfter)
    }

    private func refusal(_ name: String, rule: RateLimiter.Rule, retryAfter: Int) -> APIError {
        self.limited.increment()
        return APIError(
            .tooManyRequests, .rateLimited, "too many requests: retry in \(retryAfter) s", retryAfter: retryAfter,
            headers: [
                .rateLimitPolicy: "\"\(name)\";q=\(rule.burst);w=\(rule.windowSeconds)",
                .rateLimit: "\"\(name)\";r=0;t=\(retryAfter)",
            ])
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let rateLimitPolicy = HTTPField.Name("RateLimit-Policy")!
    static let rateLimit = HTTPField.Name("RateLimit")!
}
