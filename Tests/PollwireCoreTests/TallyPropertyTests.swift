import PollwireCore
import PropertyBased
import Testing

/// The counting rules hold for any ballots: results built by deltas equal a count of the raw
/// answers, and a changed ballot moves the tally from the old answer to the new one without
/// double counting.
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

    /// The results of a tally built by deltas equal a count made straight from the raw answers,
    /// without `Ballot` (its keys or deltas): per option, per scale value, Borda points (n - 1
    /// for a first place down to 0) and first choices of rankings.
    @Test func resultsEqualACountOfTheRawAnswers() async {
        await propertyCheck(input: Self.ballotSeeds) { seeds in
            var tally = Tally()
            var options: [String: [String: Int64]] = [:]
            var values: [String: [Int: Int64]] = [:]
            var points: [String: Int64] = [:]
            var firsts: [String: Int64] = [:]
            for seed in seeds {
                let answers = self.answers(seed)
                tally.apply(try! self.poll.ballot(answers: answers).deltas())
                for (question, answer) in answers {
                    switch (question, answer) {
                    case ("rank", .options(let order)):
                        for (position, option) in order.enumerated() {
                            points[option, default: 0] += Int64(2 - position)
                        }
                        firsts[order[0], default: 0] += 1
                    case (_, .options(let picked)):
                        for option in picked { options[question, default: [:]][option, default: 0] += 1 }
                    case (_, .number(let value)):
                        values[question, default: [:]][value, default: 0] += 1
                    default:
                        Issue.record("unexpected answer \(answer)")
                    }
                }
            }
            let results = Results(poll: self.poll, version: 1, tally: tally, latestText: [:])
            #expect(results.total == Int64(seeds.count))
            for question in results.questions ?? [] {
                switch question.id {
                case "single", "multi":
                    let counted = Dictionary(
                        uniqueKeysWithValues: (question.options ?? []).map { ($0.id, $0.count ?? -1) })
                    #expect(counted == ["a", "b", "c"].reduce(into: [:]) { $0[$1] = options[question.id]?[$1] ?? 0 })
                case "rate", "nps":
                    for entry in question.distribution ?? [] {
                        #expect(entry.count == values[question.id]?[entry.value] ?? 0, "\(question.id) \(entry.value)")
                    }
                    #expect((question.distribution ?? []).reduce(0) { $0 + $1.count } == Int64(seeds.count))
                case "rank":
                    for option in question.options ?? [] {
                        #expect(option.points == points[option.id] ?? 0, "points of \(option.id)")
                        #expect(option.firstChoices == firsts[option.id] ?? 0, "first choices of \(option.id)")
                    }
                default:
                    #expect(question.id == "text")
                }
            }
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
