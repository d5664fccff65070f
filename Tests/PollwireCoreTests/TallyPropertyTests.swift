import PollwireCore
import PropertyBased
import Testing

/// The counting rules hold for any ballots: a tally built by deltas equals a recount, and a
/// changed ballot moves the tally from the old answer to the new one without double counting.
@Suite struct TallyPropertyTests {
    let poll = everyKindPoll()

    func answers(_ seed: [Int]) -> [String: Answer] {
        let ids = ["a", "b", "c"]
        let first = ids[seed[0] % 3]
        let second = ids[(seed[0] + 1 + seed[1] % 2) % 3]
        return [
            "single": .options([first]),
            "multi": .options(seed[2] % 2 == 0 ? [first] : [first, second]),
            "rate": .number(1 + seed[3] % 5),
            "nps": .number(seed[4] % 11),
            "rank": .options(seed[5] % 2 == 0 ? [first, second] : [second]),
        ]
    }

    static let ballotSeeds = Gen.int(in: 0...1000).array(of: 6).array(of: 0...60)

    @Test func deltasEqualARecount() async {
        await propertyCheck(input: Self.ballotSeeds) { seeds in
            var incremental = Tally()
            var recount: [TallyKey: Int64] = [:]
            for seed in seeds {
                let ballot = try! self.poll.ballot(answers: self.answers(seed))
                incremental.apply(ballot.deltas())
                for key in ballot.keys { recount[key, default: 0] += 1 }
            }
            #expect(incremental == Tally(counts: recount))
            #expect(incremental.ballots == Int64(seeds.count))
        }
    }

    @Test func aChangeMovesTheTallyAndNeverDoubleCounts() async {
        await propertyCheck(input: Self.ballotSeeds, Self.ballotSeeds) { before, after in
            let pairs = zip(before, after)
            var tally = Tally()
            for (old, _) in pairs { tally.apply(try! self.poll.ballot(answers: self.answers(old)).deltas()) }
            for (old, new) in pairs {
                tally.apply(try! self.poll.ballot(answers: self.answers(old)).deltas(sign: -1))
                tally.apply(try! self.poll.ballot(answers: self.answers(new)).deltas())
            }
            var expected = Tally()
            for (_, new) in pairs { expected.apply(try! self.poll.ballot(answers: self.answers(new)).deltas()) }
            #expect(tally == expected)
        }
    }
}
