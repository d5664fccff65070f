public import Foundation
public import PollwireCore

/// Ballots cast in one second of event time, by counter: a row of what a store keeps beside
/// the tallies (`ballot_windows`), written in the transaction that stores the ballots, so that
/// every stored ballot is in exactly one second, also after a crash.
///
/// Windows count ballots cast, not ballots standing: a changed ballot counts in the second it
/// was cast, and the ballot it replaced stays in its own. The keys are a ballot's tally keys
/// but the questions' response counters (`CastWindows.counts`): `TallyKey.ballots` counts the
/// ballots themselves.
public struct WindowCount: Sendable, Equatable, Hashable {
    /// Seconds since 1970 (event time, floored).
    public var second: Int64
    public var key: TallyKey
    public var count: Int64

    public init(second: Int64, key: TallyKey, count: Int64) {
        self.second = second
        self.key = key
        self.count = count
    }
}

public enum CastWindows {
    /// Whether windows count `key`: the ballots and every answer, not a question's responses
    /// (`#`, which timelines do not show: one row less per question and second to write).
    public static func counts(_ key: TallyKey) -> Bool {
        key == .ballots || key.key != "#"
    }

    /// The row that counts ballots which came later than the allowed lateness: in the second
    /// they were stored in, and in no window (`Timeline`'s `late` total).
    public static let late = TallyKey(question: "", key: "late")

    /// The second a ballot stored at `micros` (since 1970) is counted in.
    public static func second(ofMicros micros: Int64) -> Int64 {
        micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
    }

    /// The rows stored ballots make, recounted from the ballots themselves: each ballot adds one
    /// to each of its keys (`StoredKeys`) that windows count, in its second. What the migrations,
    /// `pollwire verify` and the tests recount with.
    public struct Recount: Sendable {
        private var counts: [Int64: [TallyKey: Int64]] = [:]

        public init() {}

        /// Counts a ballot stored at `micros` that added `keys` (`StoredKeys`) and was cast at
        /// `castAt` (nil: when it was stored), as the commit that stored it did.
        public mutating func add(micros: Int64, castAt: VoteCommand.CastAt? = nil, keys: String) {
            if let castAt, castAt.late {
                self.counts[CastWindows.second(ofMicros: micros), default: [:]][CastWindows.late, default: 0] += 1
                return
            }
            let second = CastWindows.second(ofMicros: castAt?.micros ?? micros)
            for key in StoredKeys.decode(keys) where CastWindows.counts(key) {
                self.counts[second, default: [:]][key, default: 0] += 1
            }
        }

        /// The rows of the seconds before `cutoff`, in order (second, then key), zeros left out.
        public func rows(before cutoff: Int64 = .max) -> [WindowCount] {
            self.counts.filter { $0.key < cutoff }.flatMap { second, keys in
                keys.compactMap { $0.value == 0 ? nil : WindowCount(second: second, key: $0.key, count: $0.value) }
            }.sorted { ($0.second, $0.key) < ($1.second, $1.key) }
        }
    }

    /// `Recount` of `ballots`.
    public static func recount(_ ballots: some Sequence<ChainedBallot>) -> [WindowCount] {
        var recount = Recount()
        for ballot in ballots { recount.add(micros: ballot.storedAtMicros, castAt: ballot.castAt, keys: ballot.keys) }
        return recount.rows()
    }
}

/// A poll's ballots over time in tumbling windows of one width, made from its stored seconds
/// (`WindowCount`): the series by counter, totals, the rate of the last complete window and
/// each option's momentum (its share of its question in the last `momentum` complete windows
/// minus its share in the `momentum` before them).
public struct Timeline: Sendable {
    public struct Window: Sendable, Equatable {
        /// Seconds since 1970, a multiple of the width.
        public var start: Int64
        public var counts: [TallyKey: Int64]
        /// Whether the window has ended by the time of the answer.
        public var complete: Bool
        /// Whether the watermark (the time of the answer minus the allowed lateness) has passed
        /// its end: no ballot can land in it any more.
        public var final: Bool

        public var ballots: Int64 { self.counts[.ballots] ?? 0 }
        /// Ballots stored in this window that came too late for their own (`CastWindows.late`).
        public var late: Int64 { self.counts[CastWindows.late] ?? 0 }
    }

    /// The seconds of a window width written as a whole number of seconds, minutes or hours
    /// (`10s`, `1m`, `1h`), from 1 second to 1 day; nil for anything else.
    public static func seconds(ofWidth text: some StringProtocol) -> Int64? {
        guard let unit = text.last, let number = Int64(text.dropLast()), number > 0, text.first != "+" else {
            return nil
        }
        let scale: Int64
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        default: return nil
        }
        guard number <= 86_400 / scale else { return nil }
        return number * scale
    }

    /// The width in seconds.
    public var width: Int64
    public var from: Int64
    public var to: Int64
    public var windows: [Window]
    public var now: Date
    /// Seconds since 1970 before which windows are final: now minus the allowed lateness.
    public var watermark: Int64

    /// Windows of `width` seconds from `from` up to `to` (both aligned down to the width; `to`
    /// excluded), every one present, empty or not. A batch ballot may land in a window up to
    /// `latenessSeconds` after it ended (`VoteCommand.CastAt`).
    public init(rows: [WindowCount], width: Int64, from: Int64, to: Int64, now: Date, latenessSeconds: Int64 = 0) {
        precondition(width > 0 && to >= from)
        self.width = width
        self.from = Self.align(from, width)
        self.to = Self.align(to, width)
        self.now = now
        let nowSecond = Int64(now.timeIntervalSince1970.rounded(.down))
        self.watermark = nowSecond - latenessSeconds
        var windows: [Window] = []
        var start = self.from
        while start < self.to {
            windows.append(
                Window(
                    start: start, counts: [:], complete: start + width <= nowSecond,
                    final: start + width <= self.watermark))
            start += width
        }
        for row in rows where row.second >= self.from && row.second < self.to {
            let index = Int((Self.align(row.second, width) - self.from) / width)
            windows[index].counts[row.key, default: 0] += row.count
        }
        self.windows = windows
    }

    /// Times a timeline or a ballot's `castAt` may name: 1970 up to the year 3000 (so that the
    /// seconds, microseconds and the windows after them stay far inside `Int64`).
    public static let representableSeconds: ClosedRange<Double> = 0...32_503_680_000

    public static func align(_ second: Int64, _ width: Int64) -> Int64 {
        let remainder = second % width
        return second - (remainder < 0 ? remainder + width : remainder)
    }

    /// Every counter summed over the windows.
    public var totals: [TallyKey: Int64] {
        self.windows.reduce(into: [:]) { totals, window in totals.merge(window.counts, uniquingKeysWith: +) }
    }

    /// Ballots per second in the last complete window (0 when none is complete).
    public var votesPerSecond: Double {
        guard let last = self.windows.last(where: \.complete) else { return 0 }
        return Double(last.ballots) / Double(self.width)
    }

    /// For each question and key: share in the last `count` complete windows minus share in
    /// the `count` before them (a share is the key's count over its question's counts).
    public func momentum(over count: Int) -> [String: [String: Double]] {
        let complete = self.windows.filter(\.complete)
        let recent = complete.suffix(count)
        let earlier = complete.dropLast(recent.count).suffix(count)
        let now = Self.shares(recent)
        let before = Self.shares(earlier)
        var momentum: [String: [String: Double]] = [:]
        for question in Set(now.keys).union(before.keys) {
            let keys = Set((now[question] ?? [:]).keys).union((before[question] ?? [:]).keys)
            for key in keys {
                momentum[question, default: [:]][key] = (now[question]?[key] ?? 0) - (before[question]?[key] ?? 0)
            }
        }
        return momentum
    }

    static func shares(_ windows: some Sequence<Window>) -> [String: [String: Double]] {
        var counts: [String: [String: Int64]] = [:]
        for window in windows {
            for (key, count) in window.counts where Self.isOption(key) {
                counts[key.question, default: [:]][key.key, default: 0] += count
            }
        }
        return counts.mapValues { keys in
            let sum = Double(keys.values.reduce(0, +))
            return keys.mapValues { sum == 0 ? 0 : Double($0) / sum }
        }
    }

    /// The answer of `GET /v1/polls/{id}/timeline`. With `hidden` (results not shown to this
    /// reader yet) windows carry ballot counts only, and there is no momentum.
    public func json(pollID: String, label: String, momentum: Int, hidden: Bool) -> String {
        var text = "{\"poll\":"
        JSONText.appendQuoted(pollID, to: &text)
        text += ",\"window\":"
        JSONText.appendQuoted(label, to: &text)
        text += ",\"seconds\":\(self.width),\"from\":\(Self.time(self.from)),\"to\":\(Self.time(self.to))"
        text += ",\"now\":\(Self.time(Int64(self.now.timeIntervalSince1970.rounded(.down))))"
        text += ",\"watermark\":\(Self.time(self.watermark))"
        text += ",\"hidden\":\(hidden),\"windows\":["
        for (index, window) in self.windows.enumerated() {
            if index > 0 { text += "," }
            text +=
                "{\"start\":\(Self.time(window.start)),\"ballots\":\(window.ballots),\"complete\":\(window.complete)"
                + ",\"final\":\(window.final)"
            if window.late > 0 { text += ",\"late\":\(window.late)" }
            if !hidden { text += ",\"counts\":" + Self.counts(window.counts) }
            text += "}"
        }
        let totals = self.totals
        text += "],\"totals\":{\"ballots\":\(totals[.ballots] ?? 0),\"late\":\(totals[CastWindows.late] ?? 0)"
        if !hidden { text += ",\"counts\":" + Self.counts(totals) }
        text += "},\"votesPerSecond\":\(Self.number(self.votesPerSecond))"
        if !hidden { text += ",\"momentum\":" + Self.momentumJSON(self.momentum(over: momentum)) }
        return text + "}"
    }

    /// `{"question": {"key": change, ...}, ...}`, in order.
    static func momentumJSON(_ shares: [String: [String: Double]]) -> String {
        var text = "{"
        for (qIndex, question) in shares.keys.sorted().enumerated() {
            if qIndex > 0 { text += "," }
            JSONText.appendQuoted(question, to: &text)
            text += ":{"
            for (kIndex, key) in shares[question]!.keys.sorted().enumerated() {
                if kIndex > 0 { text += "," }
                JSONText.appendQuoted(key, to: &text)
                text += ":\(Self.number(shares[question]![key]!))"
            }
            text += "}"
        }
        return text + "}"
    }

    /// Whether `key` counts an answer (not the poll's ballots or a question's responses, `#`).
    static func isOption(_ key: TallyKey) -> Bool { !key.question.isEmpty && key.key != "#" }

    static func counts(_ counts: [TallyKey: Int64]) -> String {
        var byQuestion: [String: [(String, Int64)]] = [:]
        for (key, count) in counts where Self.isOption(key) && count != 0 {
            byQuestion[key.question, default: []].append((key.key, count))
        }
        var text = "{"
        for (qIndex, question) in byQuestion.keys.sorted().enumerated() {
            if qIndex > 0 { text += "," }
            JSONText.appendQuoted(question, to: &text)
            text += ":{"
            for (kIndex, (key, count)) in byQuestion[question]!.sorted(by: { $0.0 < $1.0 }).enumerated() {
                if kIndex > 0 { text += "," }
                JSONText.appendQuoted(key, to: &text)
                text += ":\(count)"
            }
            text += "}"
        }
        return text + "}"
    }

    static func time(_ second: Int64) -> String {
        "\"" + Date(timeIntervalSince1970: TimeInterval(second)).formatted(.iso8601) + "\""
    }

    /// Rounded to 4 decimals, as JSON.
    static func number(_ value: Double) -> String {
        let rounded = (value * 10_000).rounded() / 10_000
        return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
    }
}
