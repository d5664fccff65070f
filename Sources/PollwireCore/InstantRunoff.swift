/// Instant-runoff voting over ranked ballots.
public enum InstantRunoff {
    /// One counting round: first preferences among the candidates still in the race.
    public struct Round: Codable, Sendable, Equatable {
        public var counts: [String: Int64]
        /// The candidate eliminated after this round, if the round found no majority.
        public var eliminated: String?
    }

    /// The outcome: the winner (nil when nobody ranked anything) and the rounds that found it.
    public struct Outcome: Sendable, Equatable {
        public var winner: String?
        public var rounds: [Round]
    }

    /// Counts `orderings` (each a ranking and how many ballots gave it) among `candidates`.
    ///
    /// Each round gives every ballot to its highest-ranked remaining candidate; a candidate
    /// with more than half of the non-exhausted ballots wins. Otherwise the candidate with the
    /// fewest votes is eliminated; ties go against the lower Borda score, then the later
    /// candidate in `candidates` order, so the result is deterministic.
    public static func count(
        orderings: [(ranking: [String], count: Int64)],
        candidates: [String],
        borda: [String: Int64]
    ) -> Outcome {
        var remaining = candidates
        var rounds: [Round] = []
        while !remaining.isEmpty {
            var counts = Dictionary(uniqueKeysWithValues: remaining.map { ($0, Int64(0)) })
            var live: Int64 = 0
            for (ranking, count) in orderings {
                if let top = ranking.first(where: { counts[$0] != nil }) {
                    counts[top, default: 0] += count
                    live += count
                }
            }
            if live == 0 { return Outcome(winner: nil, rounds: rounds) }
            let leader = remaining.max { (counts[$0]!, -index(of: $0)) < (counts[$1]!, -index(of: $1)) }!
            if counts[leader]! * 2 > live || remaining.count == 1 {
                rounds.append(Round(counts: counts, eliminated: nil))
                return Outcome(winner: leader, rounds: rounds)
            }
            let loser = remaining.min { lhs, rhs in
                (counts[lhs]!, borda[lhs] ?? 0, -index(of: lhs)) < (counts[rhs]!, borda[rhs] ?? 0, -index(of: rhs))
            }!
            rounds.append(Round(counts: counts, eliminated: loser))
            remaining.removeAll { $0 == loser }
        }
        return Outcome(winner: nil, rounds: rounds)

        func index(of candidate: String) -> Int { candidates.firstIndex(of: candidate) ?? Int.max }
    }
}
