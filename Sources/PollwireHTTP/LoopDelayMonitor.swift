import NIOCore
import ServiceLifecycle
import Synchronization

/// How late each event loop runs a task due every `interval`: the time a request that arrives
/// now waits before its loop reads it, which grows when the loops are behind (too much work for
/// the CPU they get) and is what admission control must keep short. Each sample goes to the
/// voters' pool (`Admission.Pool.adapt`). A delay-based shedder as event-loop servers elsewhere
/// have one (`maxEventLoopDelay`); here it narrows the cap instead of refusing everything.
struct LoopDelayMonitor: Service {
    let group: any EventLoopGroup
    let pool: Admission.Pool
    /// `admission.maxLoopDelayMs`.
    let allowed: TimeAmount
    let interval: TimeAmount

    init(group: any EventLoopGroup, pool: Admission.Pool, allowed: TimeAmount, interval: TimeAmount = .milliseconds(10))
    {
        self.group = group
        self.pool = pool
        self.allowed = allowed
        self.interval = interval
    }

    /// When a loop's next sample is due, in `NIODeadline` nanoseconds.
    final class Due: Sendable {
        let nanoseconds: Atomic<Int64>
        init(_ deadline: NIODeadline) { self.nanoseconds = Atomic(Int64(deadline.uptimeNanoseconds)) }
    }

    func run() async throws {
        let (pool, allowed, interval) = (self.pool, self.allowed, self.interval)
        var tasks: [RepeatedTask] = []
        for loop in self.group.makeIterator() {
            let due = Due(.now() + interval)
            tasks.append(
                loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                    let now = NIODeadline.now()
                    let delay = Int64(now.uptimeNanoseconds) - due.nanoseconds.load(ordering: .relaxed)
                    due.nanoseconds.store(Int64((now + interval).uptimeNanoseconds), ordering: .relaxed)
                    pool.adapt(delay: .nanoseconds(Swift.max(0, delay)), allowed: allowed)
                })
        }
        try? await gracefulShutdown()
        for task in tasks { task.cancel() }
    }
}
