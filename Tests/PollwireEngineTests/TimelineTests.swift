import Foundation
import PollwireCore
import Testing

@testable import PollwireEngine

/// `Timeline`: seconds summed into aligned windows, every window present, totals, the rate of
/// the last complete window, momentum, and what a reader who may not see results gets.
struct TimelineTests {
    static let a = TallyKey(question: "q1", key: "a")
    static let b = TallyKey(question: "q1", key: "b")

    static func second(_ second: Int64, a: Int64 = 0, b: Int64 = 0) -> [WindowCount] {
        [
            WindowCount(second: second, key: .ballots, count: a + b),
            WindowCount(second: second, key: .responses("q1"), count: a + b),
            WindowCount(second: second, key: Self.a, count: a), WindowCount(second: second, key: Self.b, count: b),
        ].filter { $0.count > 0 }
    }

    @Test func secondsAreSummedIntoAlignedWindowsAndEveryWindowIsThere() {
        let rows = Self.second(1003, a: 2) + Self.second(1009, b: 1) + Self.second(1010, a: 1) + Self.second(1031, b: 4)
        let now = Date(timeIntervalSince1970: 1035.5)
        let timeline = Timeline(rows: rows, width: 10, from: 1005, to: 1039, now: now)
        // from and to align down: 1000 up to 1030 (excluded), so 1031 is outside.
        #expect(timeline.windows.map(\.start) == [1000, 1010, 1020])
        #expect(timeline.windows.map(\.ballots) == [3, 1, 0])
        #expect(timeline.windows.map(\.complete) == [true, true, true])
        #expect(timeline.windows[0].counts[Self.a] == 2 && timeline.windows[0].counts[Self.b] == 1)
        #expect(timeline.totals[.ballots] == 4)
        #expect(timeline.votesPerSecond == 0)  // the last complete window is empty
        let open = Timeline(rows: rows, width: 10, from: 1000, to: 1040, now: now)
        #expect(open.windows.map(\.complete) == [true, true, true, false])
        #expect(open.votesPerSecond == 0)
        #expect(Timeline(rows: rows, width: 10, from: 1000, to: 1030, now: now).votesPerSecond == 0)
        #expect(Timeline(rows: rows, width: 10, from: 1000, to: 1020, now: now).votesPerSecond == 0.1)
    }

    /// Late ballots (`CastWindows.late`) are a total of their own, in no window's ballots or
    /// counts; windows are final once the watermark (now minus the lateness) passes their end.
    @Test func lateBallotsAreATotalOfTheirOwnAndOldWindowsAreFinal() throws {
        let rows = Self.second(1003, a: 2) + [WindowCount(second: 1012, key: CastWindows.late, count: 3)]
        let timeline = Timeline(
            rows: rows, width: 10, from: 1000, to: 1040, now: Date(timeIntervalSince1970: 1035.5), latenessSeconds: 15)
        #expect(timeline.watermark == 1020)
        #expect(timeline.windows.map(\.final) == [true, true, false, false])
        #expect(timeline.windows.map(\.complete) == [true, true, true, false])
        #expect(timeline.windows.map(\.late) == [0, 3, 0, 0])
        #expect(timeline.windows.map(\.ballots) == [2, 0, 0, 0])
        #expect(timeline.totals[.ballots] == 2 && timeline.totals[CastWindows.late] == 3)
        let json = try #require(
            try JSONSerialization.jsonObject(
                with: Data(timeline.json(pollID: "p", label: "10s", momentum: 1, hidden: false).utf8))
                as? [String: Any])
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["late"] as? Int == 3 && totals["ballots"] as? Int == 2)
        #expect((totals["counts"] as? [String: [String: Int]]) == ["q1": ["a": 2]], "late is not an option")
        let windows = try #require(json["windows"] as? [[String: Any]])
        #expect(windows.map { $0["late"] as? Int } == [nil, 3, nil, nil])
        #expect(json["watermark"] as? String == "1970-01-01T00:17:00Z")
    }

    @Test func momentumIsTheChangeOfEachOptionsShare() {
        // Windows of 1 s: a leads 3:1 in the first two, b leads 1:3 in the next two.
        let rows =
            Self.second(100, a: 2) + Self.second(101, a: 1, b: 1) + Self.second(102, a: 1, b: 1)
            + Self.second(103, b: 2)
        let timeline = Timeline(rows: rows, width: 1, from: 100, to: 104, now: Date(timeIntervalSince1970: 200))
        let momentum = timeline.momentum(over: 2)
        #expect(momentum["q1"]?["a"] == 0.25 - 0.75)
        #expect(momentum["q1"]?["b"] == 0.75 - 0.25)
        #expect(momentum[""] == nil, "the ballot and response counters have no share")
        // Not enough windows before: the earlier share counts as 0.
        #expect(timeline.momentum(over: 4)["q1"]?["a"] == 0.5)
    }

    @Test func hiddenTimelinesCarryBallotCountsOnly() throws {
        let rows = Self.second(100, a: 2, b: 1)
        let timeline = Timeline(rows: rows, width: 1, from: 100, to: 101, now: Date(timeIntervalSince1970: 101))
        let shown = try Self.object(timeline.json(pollID: "p", label: "1s", momentum: 3, hidden: false))
        let window = try #require((shown["windows"] as? [[String: Any]])?.first)
        #expect(window["ballots"] as? Int == 3)
        #expect((window["counts"] as? [String: [String: Int]]) == ["q1": ["a": 2, "b": 1]])
        #expect(shown["start"] == nil && shown["from"] as? String == "1970-01-01T00:01:40Z")
        #expect((shown["votesPerSecond"] as? NSNumber)?.doubleValue == 3)
        let hidden = try Self.object(timeline.json(pollID: "p", label: "1s", momentum: 3, hidden: true))
        let hiddenWindow = try #require((hidden["windows"] as? [[String: Any]])?.first)
        #expect(hiddenWindow["ballots"] as? Int == 3)
        #expect(hiddenWindow["counts"] == nil)
        #expect(hidden["momentum"] == nil)
        #expect((hidden["totals"] as? [String: Any])?["counts"] == nil)
    }

    @Test func aRecountPutsEachBallotInItsSecond() {
        func ballot(_ micros: Int64, _ option: String) -> ChainedBallot {
            ChainedBallot(
                sequence: 0, voter: nil, revision: 0, storedAtMicros: micros, answers: "",
                keys: StoredKeys.encode([.ballots, .responses("q1"), TallyKey(question: "q1", key: option)]),
                chain: nil, position: nil, shard: nil)
        }
        let rows = CastWindows.recount([ballot(5_999_999, "a"), ballot(6_000_000, "b"), ballot(-1, "a")])
        #expect(rows.filter { $0.key == .ballots }.map(\.second) == [-1, 5, 6])
        #expect(rows.count == 6, "the ballots and each answer; not the question's responses (#)")
    }

    static func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }
}
