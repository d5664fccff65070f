import Foundation
import PollwireCore
import Testing

@Suite struct ResultsTests {
    func results(of answers: [[String: Answer]], poll: Poll = everyKindPoll()) throws -> Results {
        var tally = Tally()
        for answer in answers { tally.apply(try poll.ballot(answers: answer).deltas()) }
        return Results(poll: poll, version: 7, tally: tally, latestText: ["text": ["newest", "older"]])
    }

    func base(_ single: String, rate: Int, nps: Int, rank: [String]) -> [String: Answer] {
        [
            "single": .options([single]), "multi": .options([single]), "rate": .number(rate), "nps": .number(nps),
            "rank": .options(rank),
        ]
    }

    @Test func choiceCountsRatingMeanAndNPS() throws {
        let results = try self.results(of: [
            self.base("a", rate: 5, nps: 10, rank: ["a"]),
            self.base("a", rate: 4, nps: 9, rank: ["a"]),
            self.base("b", rate: 3, nps: 7, rank: ["b"]),
            self.base("c", rate: 1, nps: 0, rank: ["c"]),
        ])
        #expect(results.total == 4)
        #expect(results.version == 7)
        let single = try #require(results.questions?[0])
        #expect(single.options?.map(\.count) == [2, 1, 1])
        let rating = try #require(results.questions?[2])
        #expect(rating.mean == 3.25)
        #expect(rating.distribution?.map(\.count) == [1, 0, 1, 1, 1])
        let nps = try #require(results.questions?[3])
        #expect(nps.promoters == 2)
        #expect(nps.passives == 1)
        #expect(nps.detractors == 1)
        #expect(nps.nps == 25)
        #expect(results.questions?[5].latest == ["newest", "older"])
        #expect(results.questions?[5].total == 0)
    }

    /// Classic IRV example: a leads on first choices but c wins after b is eliminated.
    @Test func instantRunoffEliminatesTheLastAndTransfers() throws {
        var ballots: [[String: Answer]] = []
        for _ in 0..<4 { ballots.append(self.base("a", rate: 1, nps: 1, rank: ["a", "b", "c"])) }
        for _ in 0..<3 { ballots.append(self.base("a", rate: 1, nps: 1, rank: ["c", "b", "a"])) }
        for _ in 0..<2 { ballots.append(self.base("a", rate: 1, nps: 1, rank: ["b", "c", "a"])) }
        let rank = try #require(try self.results(of: ballots).questions?[4])
        #expect(rank.winner == "c")
        #expect(rank.rounds?.count == 2)
        #expect(rank.rounds?.first?.eliminated == "b")
        #expect(rank.rounds?.last?.counts == ["a": 4, "c": 5])
        // Borda with 3 options: 2 points for first, 1 for second.
        #expect(rank.options?.map(\.points) == [8, 11, 8])
        #expect(rank.options?.map(\.firstChoices) == [4, 2, 3])
    }

    @Test func aMajorityWinsInTheFirstRound() {
        let outcome = InstantRunoff.count(
            orderings: [(["x"], 3), (["y"], 2)], candidates: ["x", "y", "z"], borda: [:])
        #expect(outcome.winner == "x")
        #expect(outcome.rounds.count == 1)
    }

    @Test func noRankingsNoWinner() {
        let outcome = InstantRunoff.count(orderings: [], candidates: ["x", "y"], borda: [:])
        #expect(outcome.winner == nil)
    }

    @Test func hiddenResultsCarryOnlyTheTotal() throws {
        let hidden = Results.hidden(poll: "p", version: 3, total: 12)
        let json = String(decoding: try JSONEncoder().encode(hidden), as: UTF8.self)
        #expect(!json.contains("questions"))
        #expect(json.contains("\"total\":12"))
        #expect(json.contains("\"hidden\":true"))
    }
}
