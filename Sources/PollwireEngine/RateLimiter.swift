import Synchronization

/// Rate limiting with GCRA (the generic cell rate algorithm of redis-cell and many gateways):
/// one timestamp per key, the theoretical arrival time (TAT) of its next request.
///
/// A key at rest costs nothing to forget (its TAT is in the past), so the table is bounded:
/// sharded, and a full shard first drops every key whose TAT has passed, then the rest of a
/// random slice. Forgetting a busy key can only let it through earlier, never block it.
///
/// ```swift
/// let limiter = RateLimiter()
/// switch limiter.check("ip:203.0.113.7", rule: .init(rate: 50, burst: 500)) {
/// case .allowed(let remaining, _): ...
/// case .limited(let retryAfter): ... // 429
/// }
/// ```
public final class RateLimiter: Sendable {
    /// A limit: a sustained `rate` per second and a `burst` that may arrive at once.
    public struct Rule: Sendable, Equatable {
        public var rate: Double
        public var burst: Int

        public init(rate: Double, burst: Int) {
            self.rate = rate
            self.burst = max(1, burst)
        }

        /// Whether the rule limits anything (a rate of 0 switches it off).
        public var isEnabled: Bool { self.rate > 0 }

        /// Nanoseconds between requests at the sustained rate.
        var interval: UInt64 { UInt64(1e9 / self.rate) }

        /// The window the burst refills in, seconds (for the RateLimit-Policy header).
        public var windowSeconds: Int { max(1, Int((Double(self.burst) / self.rate).rounded(.up))) }
    }

    public enum Decision: Sendable, Equatable {
        /// Let through; `remaining` more fit in the burst now, `resetSeconds` until it is full again.
        case allowed(remaining: Int, resetSeconds: Int)
        /// Refused; the request would fit after `retryAfterSeconds` (at least 1).
        case limited(retryAfterSeconds: Int)
    }

    final class Shard: Sendable {
        let tats = Mutex<[String: UInt64]>([:])
    }

    private let shards: [Shard]
    private let capacityPerShard: Int
    private let now: @Sendable () -> UInt64

    /// - Parameters:
    ///   - capacity: most keys remembered in all (default 1,000,000, about 100 MB at worst).
    ///   - now: a monotonic clock in nanoseconds (injected by tests).
    public init(
        capacity: Int = 1_000_000, shards: Int = 64,
        now: @escaping @Sendable () -> UInt64 = { UInt64(MonotonicClock.nanoseconds()) }
    ) {
        self.shards = (0..<max(1, shards)).map { _ in Shard() }
        self.capacityPerShard = max(16, capacity / max(1, shards))
        self.now = now
    }

    /// Counts one request for `key` under `rule` and decides. Cost: one hash, one lock.
    public func check(_ key: String, rule: Rule) -> Decision {
        guard rule.isEnabled else { return .allowed(remaining: rule.burst, resetSeconds: 0) }
        let now = self.now()
        let interval = rule.interval
        let tolerance = interval * UInt64(rule.burst)
        let shard = self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(self.shards.count))]
        return shard.tats.withLock { tats in
            let tat = max(tats[key] ?? now, now)
            let next = tat + interval
            if next - now > tolerance {
                let wait = next - tolerance - now
                return .limited(retryAfterSeconds: max(1, Int((wait + 999_999_999) / 1_000_000_000)))
            }
            if tats.count >= self.capacityPerShard, tats[key] == nil {
                Self.evict(&tats, now: now, capacity: self.capacityPerShard)
            }
            tats[key] = next
            let remaining = Int((tolerance - (next - now)) / interval)
            return .allowed(remaining: remaining, resetSeconds: Int((next - now + 999_999_999) / 1_000_000_000))
        }
    }

    /// Whether a request for `key` would be refused now, without counting one: lets a caller
    /// refuse before doing work whose failures it counts afterwards.
    public func wouldLimit(_ key: String, rule: Rule) -> Int? {
        guard rule.isEnabled else { return nil }
        let now = self.now()
        let interval = rule.interval
        let tolerance = interval * UInt64(rule.burst)
        let shard = self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(self.shards.count))]
        return shard.tats.withLock { tats in
            let next = max(tats[key] ?? now, now) + interval
            guard next - now > tolerance else { return nil }
            return max(1, Int((next - tolerance - now + 999_999_999) / 1_000_000_000))
        }
    }

    /// How many keys are remembered (for tests and metrics).
    public var count: Int { self.shards.reduce(0) { $0 + $1.tats.withLock { $0.count } } }

    /// Makes room: keys at rest go first; if the shard is still full, an arbitrary eighth
    /// (dictionary order is hash order, so no key is singled out).
    private static func evict(_ tats: inout [String: UInt64], now: UInt64, capacity: Int) {
        tats = tats.filter { $0.value > now }
        guard tats.count >= capacity else { return }
        for key in Array(tats.keys.prefix(max(1, tats.count / 8))) { tats.removeValue(forKey: key) }
    }
}

/// `ContinuousClock` as nanoseconds since the process first asked.
public enum MonotonicClock {
    static let origin = ContinuousClock.now

    public static func nanoseconds() -> Int64 {
        let origin = Self.origin  // read first: the first call initialises it
        let elapsed = ContinuousClock.now - origin
        return max(0, elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
