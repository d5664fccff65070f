import Foundation
import PollwireCore

/// The moments ahead when a poll's phase changes by itself (`opensAt`, `closesAt`), soonest
/// first, so that viewers see a scheduled close (and what it reveals) at once, without a write.
///
/// A plain value: `TallyBook` keeps one behind its lock and updates it with every definition;
/// the Hub asks for what is due on each publish tick. Holds at most two moments per poll (a
/// poll's earlier moments are replaced when its definition changes), so it never grows beyond
/// the polls it knows.
struct PhaseSchedule {
    /// Ascending by time.
    private(set) var moments: [(at: Date, pollID: String)] = []

    /// The schedule of `polls` from `now` on.
    init(_ polls: some Sequence<Poll>, after now: Date) {
        for poll in polls {
            for at in Self.times(of: poll) where at > now { self.moments.append((at, poll.id)) }
        }
        self.moments.sort { $0.at < $1.at }
    }

    init() {}

    /// Replaces the poll's moments with those of its (new) definition that are still ahead.
    mutating func set(_ poll: Poll, after now: Date) {
        self.remove(poll.id)
        for at in Self.times(of: poll) where at > now {
            let index = self.moments.partitioningIndex { $0.at > at }
            self.moments.insert((at, poll.id), at: index)
        }
    }

    mutating func remove(_ pollID: String) {
        self.moments.removeAll { $0.pollID == pollID }
    }

    /// Takes the polls whose moment has come (each once, soonest first).
    mutating func due(at now: Date) -> [String] {
        let count = self.moments.partitioningIndex { $0.at > now }
        guard count > 0 else { return [] }
        var seen = Set<String>()
        let due = self.moments[..<count].compactMap { seen.insert($0.pollID).inserted ? $0.pollID : nil }
        self.moments.removeFirst(count)
        return due
    }

    /// When a poll's phase can change by itself: only an open poll opens or closes on time.
    private static func times(of poll: Poll) -> [Date] {
        guard poll.status == .open else { return [] }
        return [poll.opensAt, poll.closesAt].compactMap { $0 }
    }
}

extension Array {
    /// The first index whose element satisfies `belongs`, for an array where every element
    /// that satisfies it comes after every one that does not (binary search).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var low = 0
        var high = self.count
        while low < high {
            let middle = (low + high) / 2
            if belongs(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
