import Foundation
import PollwireCore
import PollwireEngine
import PollwirePostgres
import PollwireSQLite
import PostgresNIO
import Testing

/// The same votes against both stores, the embedded SQLite file and a real PostgreSQL: the same
/// outcomes, versions and counters (both decide with `VoteRules`, each in its own way of reading
/// what is earlier: SQLite after an INSERT meets a unique index, PostgreSQL by reading ahead).
@Suite(.serialized) struct StoreConformanceTests {
    struct Stores {
        let polls: any PollStore
        let votes: any VoteStore
    }

    enum Kind: String, CaseIterable, Sendable {
        case sqlite, postgres
    }

    /// Runs `body` with a fresh store of `kind`, removed afterwards.
    func withStores(_ kind: Kind, _ body: (Stores) async throws -> Void) async throws {
        switch kind {
        case .sqlite:
            let directory = temporaryDirectory("conformance")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let database = try SQLiteDatabase(path: directory.appendingPathComponent("pollwire.sqlite").path)
            try await body(
                Stores(polls: SQLitePollStore(database: database), votes: SQLiteVoteStore(database: database)))
        case .postgres:
            try await self.withPostgres(maxConnections: 2) { database in
                try await body(
                    Stores(polls: PostgresPollStore(database: database), votes: PostgresVoteStore(database: database)))
            }
        }
    }

    /// Runs `body` with a fresh, migrated PostgreSQL, removed afterwards.
    func withPostgres(
        maxConnections: Int, _ body: (PollwirePostgres.PostgresDatabase) async throws -> Void
    ) async throws {
        let postgres = try ThrowawayPostgres.start()
        defer { postgres.destroy() }
        let database = try PostgresDatabase(url: postgres.url, maxConnections: maxConnections)
        let pool = Task { await database.run() }
        defer { pool.cancel() }
        try await database.migrate()
        try await body(database)
    }

    func poll(_ settings: PollSettings = PollSettings(), status: Poll.Status = .open) -> Poll {
        var poll = Poll(
            id: Identifier.random(), title: "Lunch?",
            questions: [
                Question(
                    id: "q1", kind: .single, prompt: "Where?",
                    options: [.init(id: "a", label: "Pizza"), .init(id: "b", label: "Sushi")]),
                Question(id: "note", kind: .text, prompt: "Why?", required: false),
            ],
            settings: settings, createdAt: Date(), updatedAt: Date())
        poll.status = status
        return poll
    }

    func vote(_ poll: Poll, _ voter: String?, _ option: String, key: String? = nil) throws -> VoteCommand {
        VoteCommand(
            pollID: poll.id, voter: voter, idempotencyKey: key,
            ballot: try poll.ballot(answers: ["q1": .options([option])]), allowChange: poll.settings.allowChange)
    }

    /// The stored version and counts of option a and b, and the number of ballots counted.
    func stored(_ poll: Poll, in stores: Stores) async throws -> (version: Int64, a: Int64, b: Int64, ballots: Int64) {
        let stored = try #require(try await stores.polls.loadPolls(latestTextLimit: 10).first { $0.poll.id == poll.id })
        return (
            stored.version, stored.tally[TallyKey(question: "q1", key: "a")],
            stored.tally[TallyKey(question: "q1", key: "b")], stored.tally.ballots
        )
    }

    @Test(arguments: Kind.allCases) func bothStoresDecideEveryVoteAlike(_ kind: Kind) async throws {
        try await self.withStores(kind) { stores in
            // Every outcome in one group commit, in order.
            let poll = self.poll()
            let closed = self.poll(status: .closed)
            try await stores.polls.insert(poll)
            try await stores.polls.insert(closed)
            let first = try await stores.votes.commit(
                [
                    try self.vote(poll, "v:1", "a", key: "k1"),
                    try self.vote(poll, "v:1", "a"),  // the same ballot again
                    try self.vote(poll, "v:1", "b"),  // a different one, no change allowed
                    try self.vote(poll, "v:2", "a", key: "k1"),  // the key again, the same ballot
                    try self.vote(poll, "v:3", "b", key: "k1"),  // the key again, another ballot
                    try self.vote(closed, "v:1", "a"),
                    VoteCommand(
                        pollID: "missing", voter: "v:1", idempotencyKey: nil,
                        ballot: try poll.ballot(answers: ["q1": .options(["a"])]), allowChange: false),
                ], at: Date())
            #expect(
                first.outcomes == [
                    .accepted(version: 1, replayed: false), .duplicate(version: 1), .conflict,
                    .accepted(version: 1, replayed: true), .idempotencyMismatch, .pollNotOpen, .pollNotFound,
                ], "\(kind)")
            #expect(first.changes.map(\.pollID) == [poll.id])
            #expect(try await self.stored(poll, in: stores) == (1, 1, 0, 1), "\(kind)")
            // The same key and voter in a later commit: replayed and duplicate, nothing stored.
            let again = try await stores.votes.commit(
                [try self.vote(poll, "v:1", "a", key: "k1"), try self.vote(poll, "v:1", "a")], at: Date())
            #expect(again.outcomes == [.accepted(version: 1, replayed: true), .duplicate(version: 1)], "\(kind)")
            #expect(again.changes.isEmpty)

            // Changes where the poll allows them: in one commit and across commits.
            let changing = self.poll(PollSettings(allowChange: true))
            try await stores.polls.insert(changing)
            let changed = try await stores.votes.commit(
                [
                    try self.vote(changing, "v:1", "a"), try self.vote(changing, "v:2", "a"),
                    try self.vote(changing, "v:1", "b"),  // changed within the commit
                ], at: Date())
            #expect(
                changed.outcomes == [
                    .accepted(version: 1, replayed: false), .accepted(version: 1, replayed: false),
                    .changed(version: 1),
                ], "\(kind)")
            #expect(try await self.stored(changing, in: stores) == (1, 1, 1, 2), "\(kind)")
            let back = try await stores.votes.commit(
                [try self.vote(changing, "v:1", "a"), try self.vote(changing, "v:1", "a")], at: Date())
            #expect(back.outcomes == [.changed(version: 2), .duplicate(version: 2)], "\(kind)")
            #expect(try await self.stored(changing, in: stores) == (2, 2, 0, 2), "\(kind)")

            // No dedupe: every ballot counts, idempotency keys still replay.
            let open = self.poll(PollSettings(dedupe: .none))
            try await stores.polls.insert(open)
            let many = try await stores.votes.commit(
                [
                    try self.vote(open, nil, "a"), try self.vote(open, nil, "a"),
                    try self.vote(open, nil, "b", key: "x"), try self.vote(open, nil, "b", key: "x"),
                    try self.vote(open, nil, "a", key: "x"),
                ], at: Date())
            #expect(
                many.outcomes == [
                    .accepted(version: 1, replayed: false), .accepted(version: 1, replayed: false),
                    .accepted(version: 1, replayed: false), .accepted(version: 1, replayed: true),
                    .idempotencyMismatch,
                ], "\(kind)")
            #expect(try await self.stored(open, in: stores) == (1, 2, 1, 3), "\(kind)")

            // A poll that closed before the commit takes nothing.
            var closing = self.poll()
            closing.closesAt = Date().addingTimeInterval(-1)
            try await stores.polls.insert(closing)
            let late = try await stores.votes.commit([try self.vote(closing, "v:1", "a")], at: Date())
            #expect(late.outcomes == [.pollNotOpen], "\(kind)")
        }
    }

    /// Three nodes (three stores, each its own shard) commit the same poll at once, with the
    /// same voters changing their minds and the same idempotency keys: no commit waits for
    /// another's lock, the races on the unique keys are decided again, and what is stored adds
    /// up: every voter counted once with their last ballot, each key stored once, the version
    /// the number of commits that stored something.
    /// Window counts (`WindowCount`): each stored ballot adds its keys to the second it was
    /// stored in, a changed ballot counts in its own second and the replaced one stays in its;
    /// ballots not stored add nothing; the rows equal a recount of the stored ballots.
    @Test(arguments: Kind.allCases) func bothStoresCountBallotsInTheSecondTheyAreCast(_ kind: Kind) async throws {
        try await self.withStores(kind) { stores in
            let poll = self.poll(PollSettings(allowChange: true))
            try await stores.polls.insert(poll)
            let late = Date(timeIntervalSince1970: 1_700_000_000.999_999)
            let next = Date(timeIntervalSince1970: 1_700_000_001)
            _ = try await stores.votes.commit(
                [try self.vote(poll, "v:1", "a"), try self.vote(poll, "v:2", "a"), try self.vote(poll, "v:2", "a")],
                at: late)
            _ = try await stores.votes.commit(
                [try self.vote(poll, "v:1", "b"), try self.vote(poll, "v:3", "b"), try self.vote(poll, "v:3", "b")],
                at: next)
            let a = TallyKey(question: "q1", key: "a")
            let b = TallyKey(question: "q1", key: "b")
            let rows = try await stores.polls.windowCounts(pollID: poll.id, from: 1_699_999_999, to: 1_700_000_002)
            #expect(
                rows == [
                    WindowCount(second: 1_700_000_000, key: .ballots, count: 2),
                    WindowCount(second: 1_700_000_000, key: a, count: 2),
                    WindowCount(second: 1_700_000_001, key: .ballots, count: 2),
                    WindowCount(second: 1_700_000_001, key: b, count: 2),
                ])
            // `to` is excluded, `from` included.
            #expect(
                try await stores.polls.windowCounts(pollID: poll.id, from: 1_700_000_001, to: 1_700_000_001).isEmpty)
            #expect(
                try await stores.polls.windowCounts(pollID: poll.id, from: 1_700_000_001, to: 1_700_000_002).count == 2)
            // The rows are a recount of the stored ballots, and `verify` finds them so.
            let ballots = try await stores.polls.chainedBallots(pollID: poll.id, after: 0, limit: 100)
            #expect(ballots.count == 4)
            #expect(rows == CastWindows.recount(ballots))
            let verified = try await ChainVerifier.verify(stores.polls, pollID: poll.id)
            #expect(verified.first?.ballots == 4)
        }
    }

    /// Ballots sent with their own event time (`VoteCommand.CastAt`): one in time counts in its
    /// own second, a late one in the `late` row of the commit's second and in no window, one in
    /// the commit's second merges with the ballots that have no castAt. The time and the flag
    /// are stored with the ballot (the export and the recount read them, the chain covers them).
    @Test(arguments: Kind.allCases) func bothStoresCountACastAtInItsOwnSecond(_ kind: Kind) async throws {
        try await self.withStores(kind) { stores in
            let poll = self.poll()
            try await stores.polls.insert(poll)
            var early = try self.vote(poll, "v:1", "a")
            early.castAt = VoteCommand.CastAt(micros: 1_700_000_050_250_000, late: false)
            var late = try self.vote(poll, "v:2", "b")
            late.castAt = VoteCommand.CastAt(micros: 1_699_999_000_000_000, late: true)
            var same = try self.vote(poll, "v:3", "b")
            same.castAt = VoteCommand.CastAt(micros: 1_700_000_100_000_001, late: false)
            let plain = try self.vote(poll, "v:4", "a")
            // In time when it arrived, but the 10 s of lateness ran out before the commit.
            var overdue = try self.vote(poll, "v:5", "b")
            overdue.castAt = VoteCommand.CastAt(micros: 1_700_000_080_000_000, late: false)
            overdue.latenessMicros = 10_000_000
            // Within its lateness at the commit: stays in its second.
            var timely = try self.vote(poll, "v:6", "b")
            timely.castAt = VoteCommand.CastAt(micros: 1_700_000_095_000_000, late: false)
            timely.latenessMicros = 10_000_000
            let result = try await stores.votes.commit(
                [early, late, same, plain, overdue, timely], at: Date(timeIntervalSince1970: 1_700_000_100.5))
            #expect(result.outcomes.allSatisfy { if case .accepted = $0 { true } else { false } }, "\(kind)")
            let a = TallyKey(question: "q1", key: "a")
            let b = TallyKey(question: "q1", key: "b")
            let rows = try await stores.polls.windowCounts(pollID: poll.id, from: .min, to: .max)
            #expect(
                rows == [
                    WindowCount(second: 1_700_000_050, key: .ballots, count: 1),
                    WindowCount(second: 1_700_000_050, key: a, count: 1),
                    WindowCount(second: 1_700_000_095, key: .ballots, count: 1),
                    WindowCount(second: 1_700_000_095, key: b, count: 1),
                    WindowCount(second: 1_700_000_100, key: .ballots, count: 2),
                    WindowCount(second: 1_700_000_100, key: CastWindows.late, count: 2),
                    WindowCount(second: 1_700_000_100, key: a, count: 1),
                    WindowCount(second: 1_700_000_100, key: b, count: 1),
                ], "\(kind)")
            // Every ballot still counts in the tallies.
            let counted = try await self.stored(poll, in: stores)
            #expect(counted.a == 2 && counted.b == 4 && counted.ballots == 6, "\(kind)")
            let stored = [
                early.castAt, late.castAt, same.castAt, nil,
                VoteCommand.CastAt(micros: 1_700_000_080_000_000, late: true), timely.castAt,
            ]
            let ballots = try await stores.polls.chainedBallots(pollID: poll.id, after: 0, limit: 100)
            #expect(ballots.map(\.castAt) == stored, "\(kind)")
            #expect(rows == CastWindows.recount(ballots), "\(kind)")
            let exported = try await stores.polls.ballots(pollID: poll.id, after: 0, limit: 100)
            #expect(exported.map(\.castAt) == stored, "\(kind)")
            let verified = try await ChainVerifier.verify(stores.polls, pollID: poll.id)
            #expect(verified.first?.ballots == 6, "\(kind)")
        }
    }

    @Test func nodesCommittingOnePollAtOnceCountEveryVoterOnce() async throws {
        try await self.withPostgres(maxConnections: 6) { database in try await self.nodesRace(on: database) }
    }

    func nodesRace(on database: PollwirePostgres.PostgresDatabase) async throws {
        let polls = PostgresPollStore(database: database)
        let poll = self.poll(PollSettings(allowChange: true))
        try await polls.insert(poll)
        let nodes = (0..<3).map { _ in PostgresVoteStore(database: database) }

        let rounds = 30
        let (results, commits) = try await withThrowingTaskGroup(
            of: ([(VoteCommand, VoteOutcome)], Int64).self
        ) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask {
                    var random = SplitMix64(seed: UInt64(index + 1))
                    var answered: [(VoteCommand, VoteOutcome)] = []
                    var commits: Int64 = 0
                    for round in 0..<rounds {
                        // 8 of 20 voters, and one key all nodes use in this round.
                        var votes = try (0..<8).map { _ in
                            try self.vote(poll, "v:\(random.next() % 20)", random.next() % 2 == 0 ? "a" : "b")
                        }
                        votes.append(try self.vote(poll, nil, "a", key: "k\(round)"))
                        let result = try await node.commit(votes, at: Date())
                        answered += zip(votes, result.outcomes).map { ($0, $1) }
                        commits += Int64(result.changes.count)
                    }
                    return (answered, commits)
                }
            }
            var all: [(VoteCommand, VoteOutcome)] = []
            var commits: Int64 = 0
            for try await (answered, stored) in group {
                all += answered
                commits += stored
            }
            return (all, commits)
        }

        #expect(results.count == 3 * rounds * 9)
        for (vote, outcome) in results {
            switch outcome {
            case .accepted, .changed, .duplicate: continue
            default: Issue.record("\(vote.voter ?? vote.idempotencyKey ?? "?"): \(outcome)")
            }
        }
        // Each round's key was stored by exactly one node; the others replayed it.
        let firstUses = results.filter { vote, outcome in
            if vote.idempotencyKey != nil, case .accepted(_, replayed: false) = outcome { return true }
            return false
        }
        #expect(firstUses.count == rounds)

        let stored = try #require(try await polls.loadPolls(latestTextLimit: 10).first { $0.poll.id == poll.id })
        #expect(stored.shards.count == 3, "one shard per node")
        // The voters' last ballots, read back from the voters table, and the keyed ballots.
        var recount: [TallyKey: Int64] = [:]
        for try await keys in try await database.client.query(
            "SELECT keys FROM voters WHERE poll_id = \(poll.id)"
        ).decode(String.self) {
            for key in StoredKeys.decode(keys) { recount[key, default: 0] += 1 }
        }
        let voters = recount[.ballots] ?? 0
        #expect(voters == 20)
        #expect(stored.tally.ballots == voters + Int64(rounds), "every voter once, every key once")
        #expect(
            stored.tally[TallyKey(question: "q1", key: "a")] == (recount[TallyKey(question: "q1", key: "a")] ?? 0)
                + Int64(rounds))
        #expect(stored.tally[TallyKey(question: "q1", key: "b")] == recount[TallyKey(question: "q1", key: "b")] ?? 0)
        #expect(stored.version == commits, "the version counts the commits that stored something")
        // Each node chained its own shard of the poll; every chain recomputes, the recount fits.
        #expect(stored.chains.count == 3)
        let verified = try await ChainVerifier.verify(polls, pollID: poll.id)
        #expect(verified.first?.ballots == Int(stored.chains.values.reduce(0) { $0 + $1.length }))
        #expect(verified.first?.head == BallotChain.head(stored.chains))
        // Every ballot in one second's window: the nodes' rows, summed, are a recount.
        var ballots: [ChainedBallot] = []
        var after: Int64 = 0
        while true {
            let page = try await polls.chainedBallots(pollID: poll.id, after: after, limit: 1000)
            ballots += page
            guard let last = page.last, page.count == 1000 else { break }
            after = last.sequence
        }
        #expect(try await polls.windowCounts(pollID: poll.id, from: .min, to: .max) == CastWindows.recount(ballots))
    }
}
