import Foundation
import PollwireCore
import PollwireEngine
import Testing

/// The one decision every store applies, case by case and in its order of precedence.
@Suite struct VoteRulesTests {
    let poll = Poll(
        id: "p", title: "T",
        questions: [
            Question(
                id: "q1", kind: .single, prompt: "?", options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
        ],
        settings: PollSettings(), createdAt: Date(), updatedAt: Date())

    func vote(
        _ option: String, voter: String? = "v:1", key: String? = nil, allowChange: Bool = false
    ) throws
        -> VoteCommand
    {
        VoteCommand(
            pollID: "p", voter: voter, idempotencyKey: key,
            ballot: try self.poll.ballot(answers: ["q1": .options([option])]), allowChange: allowChange)
    }

    var canonicalA: String { (try? self.poll.ballot(answers: ["q1": .options(["a"])]).canonical) ?? "" }

    @Test func eachRuleInItsOrder() throws {
        let open = BatchedPoll(sequence: 4, open: true)
        let a = try self.vote("a", key: "k")
        let earlierA = VoteRules.Earlier(
            keyed: (self.canonicalA, 2), voter: (revision: 0, answers: self.canonicalA, keys: "x", version: 3))
        // The poll comes first: missing, then not open, whatever is earlier.
        #expect(VoteRules.decide(a, poll: nil, earlier: earlierA) == .answer(.pollNotFound))
        #expect(
            VoteRules.decide(a, poll: BatchedPoll(sequence: 4, open: false), earlier: earlierA) == .answer(.pollNotOpen)
        )
        // Then the idempotency key, before the voter: a replay answers what the key answered first.
        #expect(VoteRules.decide(a, poll: open, earlier: earlierA) == .answer(.accepted(version: 2, replayed: true)))
        let b = try self.vote("b", key: "k", allowChange: true)
        #expect(VoteRules.decide(b, poll: open, earlier: earlierA) == .answer(.idempotencyMismatch))
        // A key seen before counts only for a vote that carries one.
        let noKey = try self.vote("b", allowChange: true)
        #expect(
            VoteRules.decide(noKey, poll: open, earlier: earlierA) == .store(revision: 1, replacing: "x"))
        // Then the voter: the same ballot again, a change where allowed, a conflict where not.
        let voterOnly = VoteRules.Earlier(voter: (revision: 2, answers: self.canonicalA, keys: "old", version: 3))
        #expect(
            VoteRules.decide(try self.vote("a"), poll: open, earlier: voterOnly) == .answer(.duplicate(version: 3)))
        #expect(VoteRules.decide(try self.vote("b"), poll: open, earlier: voterOnly) == .answer(.conflict))
        #expect(
            VoteRules.decide(try self.vote("b", allowChange: true), poll: open, earlier: voterOnly)
                == .store(revision: 3, replacing: "old"))
        // Nothing earlier, or no voter to dedupe by: a first ballot.
        #expect(
            VoteRules.decide(try self.vote("b"), poll: open, earlier: .init()) == .store(revision: 0, replacing: nil))
        #expect(
            VoteRules.decide(try self.vote("b", voter: nil), poll: open, earlier: voterOnly)
                == .store(revision: 0, replacing: nil))
        // Outcomes of what was stored.
        #expect(
            VoteRules.outcome(of: .store(revision: 0, replacing: nil), version: 5)
                == .accepted(version: 5, replayed: false))
        #expect(VoteRules.outcome(of: .store(revision: 1, replacing: "x"), version: 5) == .changed(version: 5))
    }
}
