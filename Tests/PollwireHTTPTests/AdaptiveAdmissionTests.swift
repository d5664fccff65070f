import Foundation
import Metrics
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import PollwireHTTP

/// The voters' cap in force follows the event loops' delay: down under a sustained delay, not
/// for one slow tick, and back up to `admission.maxInFlight` when the loops keep up.
@Suite struct AdaptiveAdmissionTests {
    static func pool(limit: Int = 64, inFlight: Int) -> Admission.Pool {
        let pool = Admission.Pool(limit: limit, name: "voters", factory: NOOPMetricsHandler.instance)
        for _ in 0..<inFlight { pool.enter() }
        return pool
    }

    @Test func oneSlowTickMovesNothing() {
        let pool = Self.pool(inFlight: 40)
        #expect(pool.adapt(delay: .milliseconds(20), allowed: .milliseconds(10)) == 64)
        #expect(pool.adapt(delay: .zero, allowed: .milliseconds(10)) == 64)
        #expect(!pool.isFull)
    }

    @Test func aSustainedDelayNarrowsFromWhatIsInFlight() {
        let pool = Self.pool(inFlight: 40)
        var caps: [Int] = []
        for _ in 0..<6 { caps.append(pool.adapt(delay: .milliseconds(20), allowed: .milliseconds(10))) }
        // Smoothed: 5, 8.75, 11.6 ms...: the third sample is over 10 ms and the cap drops to 3/4 of
        // the 40 in flight, then 3/4 of itself each sample.
        #expect(caps == [64, 64, 30, 22, 16, 12])
        #expect(pool.isFull)
        for _ in 0..<40 { pool.adapt(delay: .milliseconds(20), allowed: .milliseconds(10)) }
        #expect(pool.current.load(ordering: .relaxed) == Admission.Pool.floor)
    }

    @Test func theCapGrowsBackToTheCeilingWhenTheLoopsKeepUp() {
        let pool = Self.pool(inFlight: 8)
        for _ in 0..<20 { pool.adapt(delay: .milliseconds(50), allowed: .milliseconds(10)) }
        #expect(pool.current.load(ordering: .relaxed) == Admission.Pool.floor)
        var samples = 0
        while pool.current.load(ordering: .relaxed) < 64, samples < 1000 {
            pool.adapt(delay: .zero, allowed: .milliseconds(10))
            samples += 1
        }
        #expect(pool.current.load(ordering: .relaxed) == 64)
        // Well under a second of 10 ms samples once the smoothed delay is down.
        #expect(samples < 80)
        #expect(pool.adapt(delay: .zero, allowed: .milliseconds(10)) == 64)
    }

    /// A real event loop kept busy (tasks that hold it 30 ms each) narrows the cap through
    /// `LoopDelayMonitor`; once it is free the cap comes back.
    @Test func aBusyEventLoopNarrowsTheCapThroughTheMonitor() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = Self.pool(inFlight: 32)
        let monitor = LoopDelayMonitor(group: group, pool: pool, allowed: .milliseconds(10))
        let running = Task { try await monitor.run() }
        // The monitor's samples are running before the loop gets busy.
        try await Task.sleep(for: .milliseconds(200))
        let loop = group.next()
        // Half a second of work queued at once: the monitor's next sample runs late by about that
        // much. The lowest cap is watched throughout (a loaded machine may run this test slowly).
        let busy = (0..<15).map { _ in loop.submit { usleep(30_000) } }
        var lowest = pool.current.load(ordering: .relaxed)
        for _ in 0..<400 {
            lowest = min(lowest, pool.current.load(ordering: .relaxed))
            if lowest < 32 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        for future in busy { _ = try await future.get() }
        #expect(lowest < 32)
        for _ in 0..<300 where pool.current.load(ordering: .relaxed) < 64 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(pool.current.load(ordering: .relaxed) == 64)
        running.cancel()
        _ = try? await running.value
        try await group.shutdownGracefully()
    }
}
