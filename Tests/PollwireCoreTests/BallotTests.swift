import Foundation
import PollwireCore
import Testing

@Suite struct BallotTests {
    let poll = everyKindPoll()

    func answers(_ overrides: [String: Answer?] = [:]) -> [String: Answer] {
        var answers: [String: Answer] = [
            "single": .options(["a"]), "multi": .options(["a", "c"]), "rate": .number(4), "nps": .number(9),
            "rank": .options(["b", "a", "c"]), "text": .text("nice"),
        ]
        for (key, value) in overrides { answers[key] = value }
        return answers
    }

    @Test func aValidBallotCountsEveryAnswer() throws {
        let ballot = try self.poll.ballot(answers: self.answers())
        let keys = Set(ballot.keys)
        #expect(keys.contains(.ballots))
        #expect(keys.contains(TallyKey(question: "single", key: "a")))
        #expect(keys.contains(TallyKey(question: "multi", key: "c")))
        #expect(keys.contains(TallyKey(question: "rate", key: "4")))
        #expect(keys.contains(TallyKey(question: "rank", key: "b>a>c")))
        #expect(keys.contains(.responses("text")))
        #expect(
            ballot.canonical
                == #"{"single":["a"],"multi":["a","c"],"rate":4,"nps":9,"rank":["b","a","c"],"text":"nice"}"#)
    }

    @Test(arguments: [
        ("single", Answer.options(["a", "b"]), "answers.single"),
        ("single", Answer.options(["z"]), "answers.single[0]"),
        ("single", Answer.number(1), "answers.single"),
        ("multi", Answer.options([]), "answers.multi"),
        ("multi", Answer.options(["a", "b", "c"]), "answers.multi"),
        ("multi", Answer.options(["a", "a"]), "answers.multi[1]"),
        ("rate", Answer.number(6), "answers.rate"),
        ("rate", Answer.text("5"), "answers.rate"),
        ("nps", Answer.number(11), "answers.nps"),
        ("rank", Answer.options([]), "answers.rank"),
        ("rank", Answer.options(["a", "a"]), "answers.rank[1]"),
        ("text", Answer.text(String(repeating: "x", count: 21)), "answers.text"),
        ("text", Answer.text("   "), "answers.text"),
        ("nope", Answer.number(1), "answers.nope"),
    ])
    func invalidAnswersNameTheField(question: String, answer: Answer, field: String) {
        do {
            _ = try self.poll.ballot(answers: self.answers([question: answer]))
            Issue.record("expected \(field) to be rejected")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func requiredQuestionsMustBeAnsweredOptionalOnesNeedNot() throws {
        do {
            _ = try self.poll.ballot(answers: self.answers(["single": nil]))
            Issue.record("a missing required answer was accepted")
        } catch {
            #expect(error.field == "answers.single")
        }
        let ballot = try self.poll.ballot(answers: self.answers(["text": nil]))
        #expect(!ballot.keys.contains(.responses("text")))
    }

    @Test func canonicalTextIsValidJSONThatDecodesToTheSameAnswers() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{07} é 🗳"
        var poll = self.poll
        poll.questions[5].maxLength = 200
        let ballot = try poll.ballot(answers: self.answers(["text": .text(tricky)]))
        let decoded = try JSONDecoder().decode([String: Answer].self, from: Data(ballot.canonical.utf8))
        #expect(decoded == self.answers(["text": .text(tricky)]))
    }
}
