import Foundation
import PollwireCore
import Testing

@Suite struct PollValidationTests {
    @Test func aWellFormedPollIsValid() throws {
        try everyKindPoll().validateDefinition()
    }

    /// Broken definitions and the field each must be rejected for.
    static func broken(_ index: Int) -> (Poll, String) {
        var poll = everyKindPoll()
        let field: String
        switch index {
        case 0: (poll.title, field) = ("  ", "title")
        case 1: (poll.questions, field) = ([], "questions")
        case 2: (poll.questions[1].id, field) = ("single", "questions[1].id")
        case 3: (poll.questions[0].id, field) = ("has space", "questions[0].id")
        case 4: (poll.questions[0].options, field) = ([.init(id: "a", label: "A")], "questions[0].options")
        case 5: (poll.questions[0].options[1].id, field) = ("a", "questions[0].options[1].id")
        case 6: (poll.questions[1].maxSelections, field) = (4, "questions[1].maxSelections")
        case 7: (poll.questions[0].minSelections, field) = (1, "questions[0].minSelections")
        case 8: (poll.questions[2].scale, field) = (.init(min: 3, max: 3), "questions[2].scale")
        case 9: (poll.questions[2].scale, field) = (.init(min: 0, max: 200), "questions[2].scale")
        case 10: (poll.questions[3].options, field) = ([.init(id: "x", label: "X")], "questions[3].options")
        case 11:
            poll.questions[4].options = (0..<11).map { .init(id: "o\($0)", label: "\($0)") }
            field = "questions[4].options"
        case 12: (poll.questions[5].maxLength, field) = (0, "questions[5].maxLength")
        default:
            poll.opensAt = Date(timeIntervalSince1970: 100)
            poll.closesAt = Date(timeIntervalSince1970: 50)
            field = "closesAt"
        }
        return (poll, field)
    }

    /// Each broken definition is rejected, and the error names the field that is wrong.
    @Test(arguments: 0...13)
    func brokenDefinitionsNameTheField(_ index: Int) {
        let (poll, field) = Self.broken(index)
        do {
            try poll.validateDefinition()
            Issue.record("definition \(index) was accepted; expected an error on \(field)")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test func phaseFollowsStatusAndSchedule() {
        var poll = everyKindPoll()
        let now = Date(timeIntervalSince1970: 1000)
        #expect(poll.phase(at: now) == .open)
        poll.opensAt = Date(timeIntervalSince1970: 2000)
        #expect(poll.phase(at: now) == .scheduled)
        poll.opensAt = nil
        poll.closesAt = Date(timeIntervalSince1970: 1000)
        #expect(poll.phase(at: now) == .closed)
        poll.closesAt = nil
        poll.status = .draft
        #expect(poll.phase(at: now) == .draft)
    }

    @Test func visibilityRules() {
        let now = Date(timeIntervalSince1970: 1000)
        var poll = everyKindPoll(settings: PollSettings(visibility: .afterVote))
        #expect(!poll.showsResults(at: now, hasVoted: false))
        #expect(poll.showsResults(at: now, hasVoted: true))
        poll.settings.visibility = .afterClose
        #expect(!poll.showsResults(at: now, hasVoted: true))
        poll.status = .closed
        #expect(poll.showsResults(at: now, hasVoted: false))
        poll.settings.visibility = .hiddenUntilReveal
        #expect(!poll.showsResults(at: now, hasVoted: true))
        poll.revealed = true
        #expect(poll.showsResults(at: now, hasVoted: false))
    }

    @Test func definitionsRoundTripThroughTheWireCoder() throws {
        var poll = everyKindPoll()
        poll.opensAt = Date(timeIntervalSince1970: 1_700_000_000.123)
        let data = try PollwireJSON.encoder().encode(poll)
        var decoded = try PollwireJSON.decoder().decode(Poll.self, from: data)
        // Dates travel with millisecond precision.
        #expect(abs(decoded.opensAt!.timeIntervalSince(poll.opensAt!)) < 0.001)
        decoded.opensAt = poll.opensAt
        #expect(decoded == poll)
    }
}
