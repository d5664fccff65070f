import Foundation
import PollwireCore
import PollwireEngine
import Synchronization
import Testing

/// The book tells the Hub when a poll opens or closes by itself, once per moment, from its
/// current definition; no I/O, the clock moved by hand.
@Suite struct PhaseScheduleTests {
    final class Clock: Sendable {
        let seconds = Mutex<Double>(1_000_000)
        var now: Date { Date(timeIntervalSince1970: self.seconds.withLock { $0 }) }
        func advance(_ by: Double) { self.seconds.withLock { $0 += by } }
    }

    static func poll(_ id: String, opensIn: Double? = nil, closesIn: Double? = nil, at now: Date) -> Poll {
        Poll(
            id: id, title: "?",
            questions: [
                Question(
                    id: "q1", kind: .single, prompt: "?",
                    options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
            ],
            opensAt: opensIn.map { now.addingTimeInterval($0) }, closesAt: closesIn.map { now.addingTimeInterval($0) },
            createdAt: now, updatedAt: now)
    }

    @Test func eachMomentIsReportedOnceWhenItPasses() {
        let clock = Clock()
        let book = TallyBook(now: { clock.now })
        let start = clock.now
        book.load([
            StoredPoll(poll: Self.poll("past", closesIn: -5, at: start), version: 0, tally: Tally(), latestText: [:]),
            StoredPoll(
                poll: Self.poll("both", opensIn: 10, closesIn: 20, at: start), version: 0, tally: Tally(),
                latestText: [:]),
        ])
        #expect(book.phaseChanges().isEmpty, "a moment already past at load is not news")
        book.put(Self.poll("later", closesIn: 15, at: start))
        clock.advance(9.9)
        #expect(book.phaseChanges().isEmpty)
        clock.advance(0.1)
        #expect(book.phaseChanges() == ["both"])
        #expect(book.phaseChanges().isEmpty, "reported once")
        clock.advance(10)
        #expect(book.phaseChanges() == ["later", "both"])
    }

    @Test func aChangedDefinitionReplacesItsMoments() {
        let clock = Clock()
        let book = TallyBook(now: { clock.now })
        let start = clock.now
        book.load([])
        book.put(Self.poll("p", closesIn: 5, at: start))
        book.put(Self.poll("p", closesIn: 30, at: start))
        clock.advance(10)
        #expect(book.phaseChanges().isEmpty, "the old closesAt is gone")
        var closed = Self.poll("p", closesIn: 30, at: start)
        closed.status = .closed
        book.put(closed)
        clock.advance(30)
        #expect(book.phaseChanges().isEmpty, "a closed poll does not close again on time")
        book.put(Self.poll("q", closesIn: 50, at: start))
        book.remove("q")
        clock.advance(20)
        #expect(book.phaseChanges().isEmpty, "a deleted poll has no moments")
    }
}
