import Atomics
import Foundation

/// When the first vote of each poll version was acknowledged, in nanoseconds of the
/// load generator's monotonic clock; 0 when not yet. Written by the vote sender, read by every
/// viewer: one atomic per version, no lock.
final class AckTimes: Sendable {
    private let slots: [ManagedAtomic<UInt64>]

    init(capacity: Int) {
        self.slots = (0..<capacity).map { _ in ManagedAtomic(0) }
    }

    func record(version: Int, at nanos: UInt64) {
        guard version >= 0, version < self.slots.count else { return }
        // Keep the earliest acknowledgement of the version.
        var current = self.slots[version].load(ordering: .relaxed)
        while current == 0 || nanos < current {
            let (exchanged, original) = self.slots[version].compareExchange(
                expected: current, desired: nanos, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// The earliest acknowledgement among versions in `range`, if any was acknowledged yet.
    func earliest(in range: ClosedRange<Int>) -> UInt64? {
        var result: UInt64?
        for version in range where version >= 0 && version < self.slots.count {
            let nanos = self.slots[version].load(ordering: .relaxed)
            if nanos != 0 { result = min(result ?? nanos, nanos) }
        }
        return result
    }
}

/// Nanoseconds of a monotonic clock, shared by the vote sender and the viewers.
func monotonicNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}
