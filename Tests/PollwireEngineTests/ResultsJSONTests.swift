import Foundation
import NIOCore
import PollwireEngine
import Testing

@testable import PollwireCore

@Suite struct ResultsJSONTests {
    /// What the hand-written encoder must match byte for byte.
    func foundation(_ results: Results) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return String(decoding: try encoder.encode(results), as: UTF8.self)
    }

    /// Random results of every shape `JSONEncoder` may meet: any field present or absent, negative
    /// and extreme integers, whole and fractional doubles, strings with quotes, backslashes,
    /// slashes, every control character and non-ASCII text.
    func random(_ random: inout SplitMix64) -> Results {
        let alphabet: [String] =
            [
                "a", "Z", "0", "9", "_", "-", "\"", "\\", "/", "é", "😀", "\u{2028}", "\u{7F}", " ",
            ] + (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }
        func text() -> String {
            (0..<Int.random(in: 0...8, using: &random)).map { _ in alphabet.randomElement(using: &random)! }.joined()
        }
        func integer() -> Int64 {
            switch Int.random(in: 0..<6, using: &random) {
            case 0: return Int64.min
            case 1: return Int64.max
            case 2: return -Int64.random(in: 0...1000, using: &random)
            default: return Int64.random(in: 0...1_000_000, using: &random)
            }
        }
        func double() -> Double {
            switch Int.random(in: 0..<4, using: &random) {
            case 0: return Double(Int.random(in: -100...100, using: &random))
            case 1:
                return Double(Int.random(in: 0...1000, using: &random))
                    / Double(Int.random(in: 1...999, using: &random))
            case 2: return Double.random(in: -1e-6...1e-6, using: &random)
            default: return Double.random(in: -1e22...1e22, using: &random)
            }
        }
        func maybe<T>(_ make: () -> T) -> T? { Bool.random(using: &random) ? make() : nil }
        let questions: [Results.QuestionResults]? = maybe {
            (0..<Int.random(in: 0...4, using: &random)).map { _ in
                Results.QuestionResults(
                    id: text(), kind: Question.Kind.allCases.randomElement(using: &random)!, total: integer(),
                    options: maybe {
                        (0..<Int.random(in: 0...5, using: &random)).map { _ in
                            Results.OptionResults(
                                id: text(), count: maybe(integer), points: maybe(integer), firstChoices: maybe(integer))
                        }
                    },
                    distribution: maybe {
                        (0..<Int.random(in: 0...11, using: &random)).map {
                            Results.ValueCount(value: $0 - 3, count: integer())
                        }
                    },
                    mean: maybe(double), nps: maybe(double), promoters: maybe(integer), passives: maybe(integer),
                    detractors: maybe(integer), winner: maybe(text), rounds: nil,
                    latest: maybe { (0..<Int.random(in: 0...3, using: &random)).map { _ in text() } })
            }
        }
        return Results(
            poll: text(), version: integer(), total: integer(), hidden: Bool.random(using: &random),
            stale: maybe { Bool.random(using: &random) }, questions: questions)
    }

    @Test func theFullFormIsWhatJSONEncoderWrites() throws {
        var generator = SplitMix64(seed: 0x5EED)
        for index in 0..<3000 {
            let results = self.random(&generator)
            let written = try #require(ResultsJSON.full(results))
            let expected = try self.foundation(results)
            #expect(String(buffer: written) == expected, "case \(index)")
            if String(buffer: written) != expected { return }
        }
    }

    /// Round counts are keyed by option ids in Foundation's own key order: those results are left
    /// to `JSONEncoder`, and the book's encode still gives the same bytes.
    @Test func resultsWithRoundsAreLeftToJSONEncoder() throws {
        var results = Results.hidden(poll: "p", version: 1, total: 2)
        results.hidden = false
        results.questions = [
            Results.QuestionResults(
                id: "r", kind: .ranking, total: 2, winner: "opt10",
                rounds: [InstantRunoff.Round(counts: ["opt9": 1, "opt10": 1, "Opt2": 0], eliminated: "Opt2")])
        ]
        #expect(ResultsJSON.full(results) == nil)
    }

    /// The compact form (`format=counts`): counts per option or value of every question but text,
    /// Borda points for a ranking, valid JSON; hidden results carry no counts.
    @Test func theCompactFormCarriesTheCountsOnly() throws {
        let results = Results(
            poll: "p1", version: 7, total: 2, hidden: false, stale: nil,
            questions: [
                .init(
                    id: "single", kind: .single, total: 2,
                    options: [.init(id: "a", count: 1), .init(id: "b", count: 1), .init(id: "c", count: 0)]),
                .init(
                    id: "rate", kind: .rating, total: 2,
                    distribution: (1...5).map { .init(value: $0, count: $0 == 5 ? 2 : 0) }, mean: 5),
                .init(
                    id: "rank", kind: .ranking, total: 2,
                    options: [
                        .init(id: "a", points: 3, firstChoices: 1), .init(id: "b", points: 3, firstChoices: 1),
                        .init(id: "c", points: 0, firstChoices: 0),
                    ], winner: "a", rounds: [InstantRunoff.Round(counts: ["a": 1, "b": 1], eliminated: nil)]),
                .init(id: "text", kind: .text, total: 1, latest: ["newest"]),
            ])
        let compact = ResultsJSON.compact(results)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(String(buffer: compact).utf8)) as? [String: Any])
        #expect(object["poll"] as? String == "p1")
        #expect(object["version"] as? Int == 7)
        #expect(object["total"] as? Int == 2)
        let counts = try #require(object["counts"] as? [String: [String: Int]])
        #expect(counts["single"] == ["a": 1, "b": 1, "c": 0])
        #expect(counts["rate"] == ["1": 0, "2": 0, "3": 0, "4": 0, "5": 2])
        #expect(counts["rank"] == ["a": 3, "b": 3, "c": 0])
        #expect(counts["text"] == nil)
        #expect(
            String(buffer: ResultsJSON.compact(Results.hidden(poll: "p1", version: 3, total: 2)))
                == #"{"hidden":true,"poll":"p1","total":2,"version":3}"#)
    }
}
