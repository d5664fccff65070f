import PollwireEngine
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    let nanos = Atomic<UInt64>(1_000_000_000)
    func advance(seconds: Double) { self.nanos.add(UInt64(seconds * 1e9), ordering: .relaxed) }
    var now: UInt64 { self.nanos.load(ordering: .relaxed) }
}

@Suite struct RateLimiterTests {
    @Test func aBurstPassesThenTheRateHolds() {
        let clock = ManualClock()
        let limiter = RateLimiter(now: { clock.now })
        let rule = RateLimiter.Rule(rate: 2, burst: 4)
        let decisions = (0..<5).map { _ in limiter.check("k", rule: rule) }
        #expect(decisions.prefix(4).allSatisfy { if case .allowed = $0 { true } else { false } })
        #expect(decisions[0] == .allowed(remaining: 3, resetSeconds: 1))
        #expect(decisions[3] == .allowed(remaining: 0, resetSeconds: 2))
        #expect(decisions[4] == .limited(retryAfterSeconds: 1))
        // Half a second later one more fits (rate 2/s), and only one.
        clock.advance(seconds: 0.5)
        #expect(limiter.check("k", rule: rule) == .allowed(remaining: 0, resetSeconds: 2))
        #expect(limiter.check("k", rule: rule) == .limited(retryAfterSeconds: 1))
        // Other keys are not affected.
        #expect(limiter.check("other", rule: rule) == .allowed(remaining: 3, resetSeconds: 1))
        // After the window the whole burst is back.
        clock.advance(seconds: 2)
        #expect(limiter.check("k", rule: rule) == .allowed(remaining: 3, resetSeconds: 1))
    }

    @Test func retryAfterIsWholeSecondsAndHonest() {
        let clock = ManualClock()
        let limiter = RateLimiter(now: { clock.now })
        let rule = RateLimiter.Rule(rate: 0.2, burst: 1)  // one per 5 s
        #expect(limiter.check("k", rule: rule) == .allowed(remaining: 0, resetSeconds: 5))
        #expect(limiter.check("k", rule: rule) == .limited(retryAfterSeconds: 5))
        clock.advance(seconds: 4.5)
        #expect(limiter.check("k", rule: rule) == .limited(retryAfterSeconds: 1))
        clock.advance(seconds: 0.5)
        #expect(limiter.check("k", rule: rule) == .allowed(remaining: 0, resetSeconds: 5))
    }

    @Test func aZeroRateIsOff() {
        let limiter = RateLimiter()
        let off = RateLimiter.Rule(rate: 0, burst: 1)
        for _ in 0..<100 { #expect(limiter.check("k", rule: off) == .allowed(remaining: 1, resetSeconds: 0)) }
        #expect(limiter.count == 0)
    }

    /// A flood of distinct keys never grows the table past its capacity.
    @Test func memoryStaysBoundedUnderAFloodOfKeys() {
        let clock = ManualClock()
        let limiter = RateLimiter(capacity: 4096, shards: 16, now: { clock.now })
        let rule = RateLimiter.Rule(rate: 1, burst: 10)
        for index in 0..<100_000 {
            _ = limiter.check("flood-\(index)", rule: rule)
            if index % 1000 == 0 { clock.advance(seconds: 0.01) }
        }
        #expect(limiter.count <= 4096)
        #expect(limiter.count > 0)
    }
}
