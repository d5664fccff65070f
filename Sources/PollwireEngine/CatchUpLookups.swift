import Synchronization

/// The store lookups of polls a node has not heard of, one per poll however many ask: when a
/// poll made on another node is shared, its audience reaches this node before the notification
/// does, and a thousand viewers of the new poll wait on one lookup instead of being refused.
/// Lookups of different polls are capped (`limit`): ids nobody made cost a lookup each.
public final class CatchUpLookups: Sendable {
    private let limit: Int
    private let running = Mutex<[String: Task<Bool, Never>]>([:])

    public init(limit: Int) {
        self.limit = limit
    }

    /// The answer of the lookup of `pollID` running now, or of a new one running `lookUp`;
    /// false without a lookup when `limit` other polls are being looked up.
    public func lookUp(_ pollID: String, _ lookUp: @escaping @Sendable () async -> Bool) async -> Bool {
        let (task, started) = self.running.withLock { running -> (Task<Bool, Never>?, Bool) in
            if let task = running[pollID] { return (task, false) }
            guard running.count < self.limit else { return (nil, false) }
            let task = Task { await lookUp() }
            running[pollID] = task
            return (task, true)
        }
        guard let task else { return false }
        let found = await task.value
        if started { self.running.withLock { _ = $0.removeValue(forKey: pollID) } }
        return found
    }

    /// Polls being looked up now.
    public var count: Int { self.running.withLock { $0.count } }
}
