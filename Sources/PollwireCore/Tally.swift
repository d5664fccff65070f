/// The counters of one poll: how many ballots, and per question the counts by key.
///
/// A value: applying deltas is the only way it changes, so "tally == recount of the ballots"
/// is a statement about the deltas (see `Ballot.deltas(sign:)`).
public struct Tally: Sendable, Equatable {
    public private(set) var counts: [TallyKey: Int64]

    public init(counts: [TallyKey: Int64] = [:]) {
        self.counts = counts
    }

    /// The number of ballots counted.
    public var ballots: Int64 { self.counts[.ballots] ?? 0 }

    public subscript(key: TallyKey) -> Int64 { self.counts[key] ?? 0 }

    /// Adds `deltas`; a counter that reaches zero is removed, so equal tallies compare equal.
    public mutating func apply(_ deltas: some Sequence<TallyDelta>) {
        for delta in deltas {
            let value = (self.counts[delta.key] ?? 0) + delta.amount
            if value == 0 {
                self.counts.removeValue(forKey: delta.key)
            } else {
                self.counts[delta.key] = value
            }
        }
    }

    /// The counters of one question, by key (the `#` responses counter left out).
    public func counts(of question: String) -> [String: Int64] {
        var result: [String: Int64] = [:]
        for (key, value) in self.counts where key.question == question && key.key != "#" {
            result[key.key] = value
        }
        return result
    }
}
