import Foundation
import GRDB
import NIOCore
import PollwireCore
import PollwireEngine
import PollwireSQLite
import Testing

@Suite struct SQLiteVoteStoreTests {
    @Test func everyOutcomeIsDecidedInTheTransaction() async throws {
        let store = try TestStore()
        defer { store.remove() }
        let poll = lunchPoll()
        var closed = lunchPoll()
        closed.status = .closed
        try await store.polls.insert(poll)
        try await store.polls.insert(closed)

        let result = try await store.votes.commit(
            [
                try vote(poll, voter: "v:1", "a", key: "k1"),
                try vote(poll, voter: "v:1", "a"),  // identical again
                try vote(poll, voter: "v:1", "b"),  // different, no change allowed
                try vote(poll, voter: "v:2", "a", key: "k1"),  // same key, other ballot? same canonical
                try vote(poll, voter: "v:3", "b", key: "k1"),  // same key, different ballot
                try vote(closed, voter: "v:1", "a"),
                VoteCommand(
                    pollID: "missing", voter: "v:1", idempotencyKey: nil,
                    ballot: try poll.ballot(answers: ["q1": .options(["a"])]), allowChange: false),
            ], at: Date())
        #expect(
            result.outcomes == [
                .accepted(version: 1, replayed: false), .duplicate(version: 1), .conflict,
                .accepted(version: 1, replayed: true), .idempotencyMismatch, .pollNotOpen, .pollNotFound,
            ])
        #expect(result.changes.count == 1)
        #expect(result.changes[0].sequence == 1)
        #expect(try store.storedTally(poll.id) == store.recount(poll))
        #expect(try store.storedTally(poll.id)[TallyKey(question: "q1", key: "a")] == 1)
    }

    @Test func aChangedVoteMovesTheTallies() async throws {
        let store = try TestStore()
        defer { store.remove() }
        let poll = lunchPoll(settings: PollSettings(allowChange: true))
        try await store.polls.insert(poll)
        _ = try await store.votes.commit(
            [try vote(poll, voter: "v:1", "a"), try vote(poll, voter: "v:2", "a")], at: Date())
        let second = try await store.votes.commit([try vote(poll, voter: "v:1", "b")], at: Date())
        #expect(second.outcomes == [.changed(version: 2)])
        let tally = try store.storedTally(poll.id)
        #expect(tally.ballots == 2)
        #expect(tally[TallyKey(question: "q1", key: "a")] == 1)
        #expect(tally[TallyKey(question: "q1", key: "b")] == 1)
        #expect(tally == (try store.recount(poll)))
        // The ballots table is append-only: the old ballot is still there, as revision 0.
        #expect(try await store.polls.ballotCount(pollID: poll.id) == 3)
    }

    @Test func pollsWithoutDedupeCountEveryBallotButHonourIdempotencyKeys() async throws {
        let store = try TestStore()
        defer { store.remove() }
        let poll = lunchPoll(settings: PollSettings(dedupe: .none))
        try await store.polls.insert(poll)
        let result = try await store.votes.commit(
            [
                try vote(poll, voter: nil, "a"), try vote(poll, voter: nil, "a"),
                try vote(poll, voter: nil, "a", key: "x"),
                try vote(poll, voter: nil, "a", key: "x"),
            ], at: Date())
        #expect(
            result.outcomes == [
                .accepted(version: 1, replayed: false), .accepted(version: 1, replayed: false),
                .accepted(version: 1, replayed: false), .accepted(version: 1, replayed: true),
            ])
        #expect(try store.storedTally(poll.id).ballots == 3)
    }

    @Test func loadingRestoresTalliesVersionsAndLatestText() async throws {
        let store = try TestStore()
        defer { store.remove() }
        let poll = lunchPoll()
        try await store.polls.insert(poll)
        let book = TallyBook(latestTextLimit: 2)
        book.load([])
        book.put(poll)
        for round in 0..<3 {
            let result = try await store.votes.commit(
                (0..<5).map {
                    try! vote(poll, voter: "v:\(round)-\($0)", $0 % 2 == 0 ? "a" : "b", note: "n\(round)-\($0)")
                },
                at: Date())
            book.apply(result.changes)
        }
        let reloaded = TallyBook(latestTextLimit: 2)
        reloaded.load(try await store.polls.loadPolls(latestTextLimit: 2))
        #expect(reloaded.state(of: poll.id)?.version == 3)
        #expect(reloaded.tally(of: poll.id) == book.tally(of: poll.id))
        #expect(reloaded.tally(of: poll.id) == (try store.recount(poll)))
        let snapshot = try #require(reloaded.snapshot(of: poll.id, hidden: false))
        #expect(String(buffer: snapshot.body).contains("\"latest\":[\"n2-4\",\"n2-3\"]"))
        #expect(String(buffer: snapshot.body) == String(buffer: book.snapshot(of: poll.id, hidden: false)!.body))
    }

    @Test func deletingAPollDeletesItsBallotsAndTallies() async throws {
        let store = try TestStore()
        defer { store.remove() }
        let poll = lunchPoll()
        try await store.polls.insert(poll)
        _ = try await store.votes.commit([try vote(poll, voter: "v:1", "a")], at: Date())
        #expect(try await store.polls.delete(pollID: poll.id))
        #expect(try await store.polls.ballotCount(pollID: poll.id) == 0)
        #expect(try store.storedTally(poll.id).counts.isEmpty)
        #expect(try await !store.polls.delete(pollID: poll.id))
    }

    @Test func durabilitySettingIsApplied() throws {
        for (setting, expected) in [(SQLiteDatabase.Synchronous.full, 2), (.normal, 1)] {
            let store = try TestStore(synchronous: setting)
            defer { store.remove() }
            let (mode, journal) = try store.database.pool.write { db in
                (try Int.fetchOne(db, sql: "PRAGMA synchronous")!, try String.fetchOne(db, sql: "PRAGMA journal_mode")!)
            }
            #expect(mode == expected)
            #expect(journal == "wal")
        }
    }
}
