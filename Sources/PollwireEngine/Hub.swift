public import Foundation
public import Metrics
import PollwireCore
public import ServiceLifecycle
import Synchronization

/// Live fan-out: topics per poll, sharded; each publish tick encodes each changed poll ONCE
/// and hands the same bytes to every subscriber of it.
///
/// After each group commit the ingestor marks the polls it changed as dirty (`changed`).
/// Every `publishInterval` the Hub takes the dirty polls, gets their snapshot from the
/// TallyBook (encoded at most once per version), wraps it in a `LiveFrame` once per variant,
/// and offers it to each subscriber. Offers never block: a subscriber that is still writing
/// keeps only the newest frame. One that has been stuck writing for `stuckDeadline` is closed.
///
/// Cost per tick: one lock per shard; per dirty poll one `LiveFrame` per variant (one copy of
/// the JSON into the SSE framing); per subscriber one offer (a lock and, at most, a resume).
public final class Hub: Service, Sendable {
    /// Tuning of the fan-out.
    public struct Configuration: Sendable {
        /// How often dirty polls are published. Default 50 ms.
        public var publishInterval: Duration
        /// How often idle subscribers get a heartbeat. Default 15 s.
        public var heartbeatInterval: Duration
        /// A subscriber stuck writing one frame this long is closed. Default 10 s.
        public var stuckDeadline: Duration
        /// Number of topic shards (locks). Default 16.
        public var shards: Int

        public init(
            publishInterval: Duration = .milliseconds(50), heartbeatInterval: Duration = .seconds(15),
            stuckDeadline: Duration = .seconds(10), shards: Int = 16
        ) {
            self.publishInterval = publishInterval
            self.heartbeatInterval = heartbeatInterval
            self.stuckDeadline = stuckDeadline
            self.shards = max(1, shards)
        }
    }

    struct Topic {
        var subscribers: [ObjectIdentifier: any LiveSubscriber] = [:]
    }

    struct ShardState {
        var topics: [String: Topic] = [:]
        /// Polls changed since the last tick, with when they first changed.
        var dirty: [String: ContinuousClock.Instant] = [:]
    }

    final class Shard: Sendable {
        let state = Mutex(ShardState())
    }

    private let shards: [Shard]
    private let book: TallyBook
    public let configuration: Configuration
    private let now: @Sendable () -> Date
    private let metrics: HubMetrics
    /// Told which polls opened or closed by themselves on a tick (to purge CDN copies).
    private let phaseChanged: @Sendable ([String]) -> Void

    public init(
        book: TallyBook, configuration: Configuration = Configuration(),
        now: @escaping @Sendable () -> Date = { Date() },
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        phaseChanged: @escaping @Sendable ([String]) -> Void = { _ in }
    ) {
        self.book = book
        self.configuration = configuration
        self.now = now
        self.shards = (0..<configuration.shards).map { _ in Shard() }
        self.metrics = HubMetrics(factory: metricsFactory)
        self.phaseChanged = phaseChanged
    }

    private func shard(_ pollID: String) -> Shard {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in pollID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return self.shards[Int(hash % UInt64(self.shards.count))]
    }

    // MARK: Subscribing

    /// Adds `subscriber` to the poll's topic.
    public func subscribe(_ subscriber: any LiveSubscriber, to pollID: String) {
        self.shard(pollID).state.withLock { state in
            state.topics[pollID, default: Topic()].subscribers[ObjectIdentifier(subscriber)] = subscriber
        }
    }

    /// Removes `subscriber` from the poll's topic; the topic goes when its last subscriber does.
    public func unsubscribe(_ subscriber: any LiveSubscriber, from pollID: String) {
        self.shard(pollID).state.withLock { state in
            state.topics[pollID]?.subscribers.removeValue(forKey: ObjectIdentifier(subscriber))
            if state.topics[pollID]?.subscribers.isEmpty == true { state.topics.removeValue(forKey: pollID) }
        }
    }

    /// How many subscribers all topics hold.
    public var subscriberCount: Int {
        self.shards.reduce(0) { total, shard in
            total + shard.state.withLock { $0.topics.values.reduce(0) { $0 + $1.subscribers.count } }
        }
    }

    /// The frame a new subscriber gets first: the poll's current results in its variant.
    public func currentFrame(of pollID: String, hasVoted: Bool) -> LiveFrame? {
        guard let poll = self.book.poll(pollID) else { return nil }
        let full = poll.showsResults(at: self.now(), hasVoted: hasVoted)
        return self.book.snapshot(of: pollID, hidden: !full).map { LiveFrame(snapshot: $0, committedAt: .now) }
    }

    // MARK: Changes

    /// Marks the polls of a commit dirty: published on the next tick. Called by the ingestor.
    public func changed(_ changes: [PollChange]) {
        let at = ContinuousClock.now
        for change in changes { self.touch(change.pollID, at: at) }
    }

    /// Marks one poll dirty (its definition changed: reveal, close, visibility; or its phase).
    public func touch(_ pollID: String, at instant: ContinuousClock.Instant = .now) {
        self.shard(pollID).state.withLock { state in
            guard state.topics[pollID] != nil, state.dirty[pollID] == nil else { return }
            state.dirty[pollID] = instant
        }
    }

    // MARK: Publishing

    /// Publishes every `publishInterval` until shutdown.
    public func run() async throws {
        var lastHeartbeat = ContinuousClock.now
        var lastStuckCheck = ContinuousClock.now
        let clock = ContinuousClock()
        var next = clock.now.advanced(by: self.configuration.publishInterval)
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await clock.sleep(until: next)
            } catch {
                break
            }
            next = next.advanced(by: self.configuration.publishInterval)
            if next < clock.now { next = clock.now.advanced(by: self.configuration.publishInterval) }
            self.publishPhaseChanges()
            self.publish()
            let now = clock.now
            if now - lastStuckCheck >= .seconds(1) {
                lastStuckCheck = now
                self.closeStuckSubscribers(now: now)
            }
            if now - lastHeartbeat >= self.configuration.heartbeatInterval {
                lastHeartbeat = now
                self.forEachSubscriber { $0.ping() }
            }
        }
    }

    /// Marks dirty the polls whose `opensAt` or `closesAt` has just passed, so that this tick
    /// gives their viewers what they may now see (an `after_close` poll's results at its close).
    /// Every node does this by itself from the definitions it holds.
    public func publishPhaseChanges() {
        let polls = self.book.phaseChanges()
        guard !polls.isEmpty else { return }
        for poll in polls { self.touch(poll) }
        self.phaseChanged(polls)
    }

    /// One tick: offers the newest frame of every dirty poll to its subscribers; subscribers in
    /// a delivery group get the tick's frames in one batch per group.
    public func publish() {
        let now = self.now()
        var offers = LiveOffers()
        defer { offers.deliver() }
        for shard in self.shards {
            let work: [(String, ContinuousClock.Instant, [any LiveSubscriber])] = shard.state.withLock { state in
                guard !state.dirty.isEmpty else { return [] }
                defer { state.dirty.removeAll(keepingCapacity: true) }
                return state.dirty.compactMap { pollID, at in
                    state.topics[pollID].map { (pollID, at, Array($0.subscribers.values)) }
                }
            }
            for (pollID, committedAt, subscribers) in work {
                guard let poll = self.book.poll(pollID) else { continue }
                var full: LiveFrame?
                var hidden: LiveFrame?
                for subscriber in subscribers {
                    let showsAll = poll.showsResults(at: now, hasVoted: subscriber.hasVoted(pollID))
                    let frame: LiveFrame?
                    if showsAll {
                        if full == nil {
                            full = self.book.snapshot(of: pollID, hidden: false).map {
                                LiveFrame(snapshot: $0, committedAt: committedAt)
                            }
                        }
                        frame = full
                    } else {
                        if hidden == nil {
                            hidden = self.book.snapshot(of: pollID, hidden: true).map {
                                LiveFrame(snapshot: $0, committedAt: committedAt)
                            }
                        }
                        frame = hidden
                    }
                    guard let frame else { continue }
                    self.metrics.offers.increment()
                    offers.add(frame, to: subscriber)
                }
            }
        }
    }

    private func closeStuckSubscribers(now: ContinuousClock.Instant) {
        self.forEachSubscriber { subscriber in
            if let since = subscriber.writingSince, now - since > self.configuration.stuckDeadline {
                self.metrics.slowDisconnects.increment()
                subscriber.close(reason: "not reading: no write completed in \(self.configuration.stuckDeadline)")
            }
        }
    }

    private func forEachSubscriber(_ body: (any LiveSubscriber) -> Void) {
        for shard in self.shards {
            let subscribers = shard.state.withLock { state in
                state.topics.values.flatMap { $0.subscribers.values }
            }
            subscribers.forEach(body)
        }
    }
}

/// Frames for live subscribers, gathered and then handed over: subscribers in a delivery group
/// get theirs in one batch per group (one hop to its thread), the rest one by one at once.
public struct LiveOffers {
    private var batches:
        [ObjectIdentifier: (group: any LiveDeliveryGroup, batch: [(subscriber: any LiveSubscriber, frame: LiveFrame)])] =
            [:]

    public init() {}

    public mutating func add(_ frame: LiveFrame, to subscriber: any LiveSubscriber) {
        if let group = subscriber.deliveryGroup {
            self.batches[ObjectIdentifier(group), default: (group, [])].batch.append((subscriber, frame))
        } else {
            subscriber.offer(frame)
        }
    }

    /// Hands each group its batch.
    public func deliver() {
        for (_, entry) in self.batches { entry.group.offer(entry.batch) }
    }
}

/// The Hub's metrics: `pollwire_live_*`.
struct HubMetrics: Sendable {
    let offers: Counter
    let slowDisconnects: Counter

    init(factory: any MetricsFactory) {
        self.offers = Counter(label: "pollwire_live_offers_total", factory: factory)
        self.slowDisconnects = Counter(label: "pollwire_live_slow_disconnects_total", factory: factory)
    }
}
