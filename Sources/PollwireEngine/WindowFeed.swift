public import Foundation
public import Metrics
import NIOCore
import PollwireCore
public import ServiceLifecycle
import Synchronization

/// Live `window` events: when a tumbling window ends, its ballots by option, votes/s now and
/// each option's momentum, to the viewers of the poll that asked for windows of that width
/// (SSE `?windows=10s`, WebSocket `"windows": "10s"` on subscribe); and a correction when a
/// window already sent changes before it is final (a batch ballot with an earlier `castAt`, or
/// a commit stamped before the window's end that landed after it was sent).
///
/// The counts come from the store (`PollStore.windowCounts`, summed over the nodes of a
/// cluster), read `grace` after each whole second for the polls with viewers of a width that
/// ends then: one read per poll and width per window end, whatever the number of viewers, and
/// the same counts on every node. Each read covers the windows not yet final (the allowed
/// lateness, at most `maxTrackedWindows`) and the ones momentum needs; the windows sent that
/// are not final are kept per poll and width to find corrections, and dropped once final.
/// Memory: per poll and width with viewers, at most `maxTrackedWindows` windows' counts.
public final class WindowFeed: Service, Sendable {
    struct TopicKey: Hashable {
        var poll: String
        var width: Int64
    }

    struct Topic {
        var label: String
        var subscribers: [ObjectIdentifier: any LiveSubscriber] = [:]
        /// Windows sent that may still change: start -> counts as sent.
        var sent: [Int64: [TallyKey: Int64]] = [:]
        /// Frames made for this topic, so that each is new to its viewers.
        var sequence: Int64 = 0
    }

    /// The widths viewers may ask for (`analytics.windows`): label -> seconds.
    public let widths: [String: Int64]
    private let store: any PollStore
    private let book: TallyBook
    private let latenessSeconds: Int64
    private let grace: Duration
    private let momentum: Int
    private let now: @Sendable () -> Date
    private let topics = Mutex<[TopicKey: Topic]>([:])
    private let emitted: Counter
    private let corrected: Counter

    /// Most windows back a correction is looked for, whatever the allowed lateness.
    static let maxTrackedWindows: Int64 = 300

    public init(
        store: any PollStore, book: TallyBook, widths: [String], latenessSeconds: Int64,
        grace: Duration = .milliseconds(50), momentum: Int = 3, now: @escaping @Sendable () -> Date = { Date() },
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.store = store
        self.book = book
        self.widths = Dictionary(
            widths.compactMap { label in Timeline.seconds(ofWidth: label).map { (label, $0) } },
            uniquingKeysWith: { first, _ in first })
        self.latenessSeconds = latenessSeconds
        self.grace = grace
        self.momentum = momentum
        self.now = now
        self.emitted = Counter(label: "pollwire_live_windows_total", factory: metricsFactory)
        self.corrected = Counter(label: "pollwire_live_window_corrections_total", factory: metricsFactory)
    }

    // MARK: Subscribing

    /// Sends `subscriber` the poll's windows of width `label` as they end; false when the width
    /// is not one of `widths`. One width per subscriber and poll: a new one replaces the old.
    public func subscribe(_ subscriber: any LiveSubscriber, to pollID: String, width label: String) -> Bool {
        guard let seconds = self.widths[label] else { return false }
        self.unsubscribe(subscriber, from: pollID)
        self.topics.withLock { topics in
            topics[TopicKey(poll: pollID, width: seconds), default: Topic(label: label)]
                .subscribers[ObjectIdentifier(subscriber)] = subscriber
        }
        return true
    }

    /// Stops the poll's windows for `subscriber` (any width); a topic goes with its last viewer.
    public func unsubscribe(_ subscriber: any LiveSubscriber, from pollID: String) {
        self.topics.withLock { topics in
            for seconds in self.widths.values {
                let key = TopicKey(poll: pollID, width: seconds)
                guard topics[key]?.subscribers.removeValue(forKey: ObjectIdentifier(subscriber)) != nil else {
                    continue
                }
                if topics[key]?.subscribers.isEmpty == true { topics.removeValue(forKey: key) }
            }
        }
    }

    /// Polls and widths with viewers now.
    public var topicCount: Int { self.topics.withLock { $0.count } }

    // MARK: Sending

    /// Sends the windows ending at each whole second, `grace` after it, until shutdown.
    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let now = self.now().timeIntervalSince1970
            let boundary = now.rounded(.down) + 1
            do {
                try await Task.sleep(for: .seconds(boundary - now) + self.grace)
            } catch {
                break
            }
            await self.send(windowsEndingAt: Int64(boundary))
        }
    }

    /// Sends every topic's window that ends at `boundary` (seconds since 1970), and corrections
    /// of the windows sent before that changed since.
    public func send(windowsEndingAt boundary: Int64) async {
        let due = self.topics.withLock { topics in
            topics.compactMap { key, topic in boundary % key.width == 0 ? (key, topic.label) : nil }
        }
        let ended = ContinuousClock.now - .seconds(self.now().timeIntervalSince1970 - Double(boundary))
        for (key, label) in due {
            let width = key.width
            let tracked = min(Self.maxTrackedWindows, (self.latenessSeconds + width - 1) / width + 1)
            let from = boundary - width * max(tracked, Int64(2 * self.momentum))
            guard let rows = try? await self.store.windowCounts(pollID: key.poll, from: from, to: boundary) else {
                continue
            }
            let timeline = Timeline(
                rows: rows, width: width, from: from, to: boundary,
                now: Date(timeIntervalSince1970: TimeInterval(boundary)), latenessSeconds: self.latenessSeconds)
            self.send(timeline, key: key, label: label, ended: ended)
        }
    }

    private func send(_ timeline: Timeline, key: TopicKey, label: String, ended: ContinuousClock.Instant) {
        guard let poll = self.book.poll(key.poll), let last = timeline.windows.last else { return }
        // Which windows go out: the one that just ended, and those sent before that changed.
        let work = self.topics.withLock {
            topics -> (windows: [(Timeline.Window, Bool)], [any LiveSubscriber], Int64)? in
            guard var topic = topics[key], !topic.subscribers.isEmpty else { return nil }
            var windows: [(Timeline.Window, Bool)] = []
            for window in timeline.windows.dropLast() {
                guard let sent = topic.sent[window.start] else { continue }
                if sent != window.counts { windows.append((window, true)) }
                topic.sent[window.start] = window.final ? nil : window.counts
            }
            windows.append((last, false))
            topic.sent[last.start] = last.final ? nil : last.counts
            // Windows gone from the range read can no longer be corrected.
            topic.sent = topic.sent.filter { $0.key >= timeline.from }
            let sequence = topic.sequence
            topic.sequence += Int64(windows.count)
            topics[key] = topic
            return (windows, Array(topic.subscribers.values), sequence)
        }
        guard let (windows, subscribers, sequence) = work else { return }
        let at = self.now()
        var offers = LiveOffers()
        for (index, (window, correction)) in windows.enumerated() {
            if correction { self.corrected.increment() } else { self.emitted.increment() }
            var variants: [Bool: LiveFrame] = [:]
            for subscriber in subscribers {
                let hidden = !poll.showsResults(at: at, hasVoted: subscriber.hasVoted(key.poll))
                let frame =
                    variants[hidden]
                    ?? LiveFrame(
                        window: ByteBuffer(
                            string: timeline.windowJSON(
                                window, pollID: key.poll, label: label, momentum: self.momentum,
                                correction: correction, hidden: hidden)),
                        pollID: key.poll, sequence: sequence + Int64(index), hidden: hidden, endedAt: ended)
                variants[hidden] = frame
                offers.add(frame, to: subscriber)
            }
        }
        offers.deliver()
    }
}

extension Timeline {
    /// One window as a live `window` event: the window, then votes/s and momentum as of the
    /// end of the timeline. Hidden: ballot counts only.
    public func windowJSON(
        _ window: Window, pollID: String, label: String, momentum: Int, correction: Bool, hidden: Bool
    ) -> String {
        var text = "{\"type\":\"window\",\"poll\":"
        JSONText.appendQuoted(pollID, to: &text)
        text += ",\"window\":"
        JSONText.appendQuoted(label, to: &text)
        text += ",\"start\":\(Self.time(window.start)),\"end\":\(Self.time(window.start + self.width))"
        text += ",\"ballots\":\(window.ballots),\"late\":\(window.late),\"final\":\(window.final)"
        text += ",\"correction\":\(correction)"
        if !hidden { text += ",\"counts\":" + Self.counts(window.counts) }
        text += ",\"votesPerSecond\":\(Self.number(self.votesPerSecond))"
        if !hidden { text += ",\"momentum\":" + Self.momentumJSON(self.momentum(over: momentum)) }
        return text + "}"
    }
}
