import Foundation
import NIOCore
import PollwireCore
import Synchronization
import Testing

@testable import PollwireEngine

/// The engine's side of cluster mode: changes applied once and in sequence order within their
/// shard whatever order they arrive in, stale marking, and votes answered within the commit deadline.
struct ClusterSeamTests {
    static let poll = Poll(
        id: "p1", title: "?",
        questions: [
            Question(
                id: "q1", kind: .single, prompt: "?", options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
        ],
        createdAt: Date(), updatedAt: Date())

    static func change(_ sequence: Int64, _ option: String, shard: Int32 = 0) -> PollChange {
        PollChange(
            pollID: "p1", shard: shard, sequence: sequence,
            deltas: [
                TallyDelta(key: .ballots, amount: 1), TallyDelta(key: TallyKey(question: "q1", key: option), amount: 1),
            ], texts: [])
    }

    func book() -> TallyBook {
        let book = TallyBook()
        book.load([StoredPoll(poll: Self.poll, version: 0, tally: Tally(), latestText: [:])])
        return book
    }

    @Test func changesArrivingOutOfOrderAreAppliedInOrderAndOnce() {
        let book = self.book()
        // Node B's own commit (3) lands before node A's (1, 2) arrive from the feed.
        book.apply([Self.change(3, "b")])
        #expect(book.state(of: "p1")?.version == 0, "3 waits for 1 and 2")
        #expect(book.gaps(olderThan: .zero) == ["p1"])
        book.apply([Self.change(1, "a")])
        #expect(book.state(of: "p1")?.version == 1)
        book.apply([Self.change(2, "a"), Self.change(2, "a"), Self.change(1, "a")])
        #expect(book.state(of: "p1")?.version == 3, "2 arrived: 3 follows it")
        book.apply([Self.change(3, "b")])
        let tally = book.tally(of: "p1")
        #expect(tally?[TallyKey(question: "q1", key: "a")] == 2)
        #expect(tally?[TallyKey(question: "q1", key: "b")] == 1)
        #expect(tally?.ballots == 3)
        #expect(book.gaps(olderThan: .zero).isEmpty)
    }

    @Test func aResyncClosesAGapThatNoChangeFills() {
        let book = self.book()
        book.apply([Self.change(2, "a"), Self.change(4, "b")])
        // The store says: version 3, with 3 ballots (1 lost notification, 2 and 3 in it).
        var tally = Tally()
        tally.apply([
            TallyDelta(key: .ballots, amount: 3), TallyDelta(key: TallyKey(question: "q1", key: "a"), amount: 3),
        ])
        #expect(book.resync(StoredPoll(poll: Self.poll, version: 3, tally: tally, latestText: [:])))
        #expect(book.state(of: "p1")?.version == 4, "the held change 4 follows the resynced 3")
        #expect(book.tally(of: "p1")?.ballots == 4)
        #expect(book.gaps(olderThan: .zero).isEmpty)
        #expect(!book.resync(StoredPoll(poll: Self.poll, version: 3, tally: tally, latestText: [:])), "older: ignored")
    }

    @Test func shardsAreAppliedEachInItsOwnOrderAndTheVersionCountsThemAll() {
        let book = self.book()
        // Nodes 1 and 2 commit the same poll at once; node 2's second commit overtakes its first.
        let versions = book.applyReportingVersions([
            Self.change(1, "a", shard: 1), Self.change(2, "b", shard: 2), Self.change(2, "a", shard: 1),
        ])
        #expect(versions == [1, nil, 2], "shard 2's 2 waits for its 1; shard 1 does not wait for shard 2")
        #expect(book.gaps(olderThan: .zero) == ["p1"])
        #expect(book.sequence(of: "p1", shard: 2) == 0)
        #expect(book.applyReportingVersions([Self.change(1, "b", shard: 2)]) == [3])
        #expect(book.state(of: "p1")?.version == 4, "shard 2's held 2 follows its 1")
        #expect(
            book.applyReportingVersions([Self.change(2, "b", shard: 2), Self.change(1, "a", shard: 1)]) == [nil, nil],
            "repeats")
        #expect(book.state(of: "p1")?.version == 4)
        #expect(book.tally(of: "p1")?[TallyKey(question: "q1", key: "b")] == 2)
        #expect(book.tally(of: "p1")?.ballots == 4)
        #expect(book.gaps(olderThan: .zero).isEmpty)
    }

    @Test func aStoreReadBehindTheBookInOneShardDoesNotReplaceItsCounters() {
        let book = self.book()
        book.apply([Self.change(1, "a", shard: 1), Self.change(3, "a", shard: 2)])
        var tally = Tally()
        tally.apply([
            TallyDelta(key: .ballots, amount: 2), TallyDelta(key: TallyKey(question: "q1", key: "b"), amount: 2),
        ])
        // Read before shard 1's commit landed, after shard 2's first two: behind in shard 1.
        #expect(!book.resync(StoredPoll(poll: Self.poll, shards: [2: 2], tally: tally, latestText: [:])))
        #expect(book.state(of: "p1")?.version == 1)
        #expect(book.gaps(olderThan: .zero) == ["p1"], "the gap stays open for the next read")
        // A later read holds all of it: taken, and shard 2's held 3 follows.
        tally.apply([
            TallyDelta(key: .ballots, amount: 1), TallyDelta(key: TallyKey(question: "q1", key: "a"), amount: 1),
        ])
        #expect(book.resync(StoredPoll(poll: Self.poll, shards: [1: 1, 2: 2], tally: tally, latestText: [:])))
        #expect(book.state(of: "p1")?.version == 4)
        #expect(book.tally(of: "p1")?.ballots == 4)
        #expect(book.gaps(olderThan: .zero).isEmpty)
    }

    @Test func votersAreToldTheVersionTheBookReachedWithTheirCommit() {
        let renumbered = VoteIngestor.renumbering(
            [Self.change(5, "a", shard: 2), PollChange(pollID: "p2", shard: 2, sequence: 3, deltas: [], texts: [])],
            versions: [9, 3])
        #expect(renumbered.count == 1, "the same number needs no renumbering")
        let (sequence, version) = (renumbered["p1"]!.sequence, renumbered["p1"]!.version)
        #expect(
            VoteIngestor.renumber(.accepted(version: 5, replayed: false), from: sequence, to: version)
                == .accepted(version: 9, replayed: false))
        #expect(VoteIngestor.renumber(.duplicate(version: 5), from: sequence, to: version) == .duplicate(version: 9))
        #expect(
            VoteIngestor.renumber(.duplicate(version: 4), from: sequence, to: version) == .duplicate(version: 4),
            "an earlier commit's number stays")
        #expect(VoteIngestor.renumber(.conflict, from: sequence, to: version) == .conflict)
    }

    @Test func staleResultsSayStaleAndChangeTheirETag() throws {
        let book = self.book()
        let fresh = try #require(book.snapshot(of: "p1", hidden: false))
        #expect(book.setStale(true))
        let stale = try #require(book.snapshot(of: "p1", hidden: false))
        #expect(stale.stale)
        #expect(String(buffer: stale.body).contains("\"stale\":true"))
        #expect(stale.etag != fresh.etag)
        #expect(book.setStale(false))
        #expect(!String(buffer: try #require(book.snapshot(of: "p1", hidden: false)).body).contains("stale"))
    }

    /// A store whose commits hang until released: a database on a dead connection.
    final class HangingStore: VoteStore {
        let commits = Atomic<Int>(0)
        func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
            self.commits.add(1, ordering: .relaxed)
            try await Task.sleep(for: .seconds(30))
            return CommitResult(outcomes: [], changes: [])
        }
    }

    @Test func votesAreAnsweredWithinTheDeadlineAndTheBreakerStopsTrying() async throws {
        let store = HangingStore()
        let ingestor = VoteIngestor(
            store: store, book: self.book(),
            configuration: .init(
                commitDeadline: .seconds(1), breakerThreshold: 2, breakerCooldown: .seconds(30)))
        let writer = Task { try await ingestor.run() }
        defer { writer.cancel() }
        let command = VoteCommand(
            pollID: "p1", voter: nil, idempotencyKey: nil,
            ballot: try Self.poll.ballot(answers: ["q1": .options(["a"])]), allowChange: false)

        // Two votes at once: the second queues behind the first's hanging commit, and is still
        // answered within its own deadline from when it was queued, not after two. Each is timed
        // from its own submit (its task may start late on a machine busy with other suites), and
        // the bound leaves 0.9 s for timers that fire late.
        @Sendable func timedVote() async -> (Result<[VoteOutcome], IngestError>, Duration) {
            let started = ContinuousClock.now
            let result = await Result { () async throws(IngestError) in try await ingestor.submit([command]) }
            return (result, ContinuousClock.now - started)
        }
        async let first = timedVote()
        async let second = timedVote()
        for (answer, took) in await [first, second] {
            #expect(throws: IngestError(.storeUnavailable, "the store did not answer in time")) { try answer.get() }
            #expect(took < .milliseconds(1900), "answered after \(took)")
        }

        // One more failure opens the breaker: votes are refused at once, the store is not asked.
        _ = try? await ingestor.submit([command])
        let tries = store.commits.load(ordering: .relaxed)
        #expect(!ingestor.isStoreAvailable)
        let refusedAt = ContinuousClock.now
        await #expect(throws: IngestError(.storeUnavailable, "the store is unavailable")) {
            try await ingestor.submit([command])
        }
        #expect(ContinuousClock.now - refusedAt < .milliseconds(500), "a refusal must not wait for a deadline")
        #expect(store.commits.load(ordering: .relaxed) == tries)
    }
}

extension Result where Failure == IngestError {
    init(_ body: () async throws(IngestError) -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}

/// A new poll's audience reaching a node before the poll's notification does: one lookup, every
/// viewer answered by it; a flood of made-up ids gets a few lookups, not one each.
struct CatchUpLookupsTests {
    final class Calls: Sendable {
        let count = Atomic<Int>(0)
    }

    @Test func everyoneAskingForOnePollSharesOneLookup() async {
        let lookups = CatchUpLookups(limit: 4)
        let calls = Calls()
        let answers = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    await lookups.lookUp("new") {
                        calls.count.wrappingAdd(1, ordering: .relaxed)
                        try? await Task.sleep(for: .milliseconds(500))
                        return true
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(answers.count == 200)
        #expect(answers.allSatisfy { $0 }, "a caller beyond the first four was refused")
        // One, unless a straggler came after it had finished.
        #expect(
            calls.count.load(ordering: .relaxed) <= 2, "\(calls.count.load(ordering: .relaxed)) lookups for one poll")
        #expect(lookups.count == 0)
    }

    @Test func differentPollsBeyondTheLimitAreRefusedWithoutALookup() async {
        let lookups = CatchUpLookups(limit: 2)
        let release = AsyncStream<Void>.makeStream()
        let calls = Calls()
        await withTaskGroup(of: Void.self) { group in
            for id in ["a", "b"] {
                group.addTask {
                    _ = await lookups.lookUp(id) {
                        calls.count.wrappingAdd(1, ordering: .relaxed)
                        for await _ in release.stream { break }
                        return true
                    }
                }
            }
            while lookups.count < 2 { try? await Task.sleep(for: .milliseconds(5)) }
            let refused = await lookups.lookUp("c") {
                calls.count.wrappingAdd(1, ordering: .relaxed)
                return true
            }
            #expect(!refused)
            release.continuation.finish()
        }
        #expect(calls.count.load(ordering: .relaxed) == 2)
        #expect(lookups.count == 0)
        // Room again once they are done.
        #expect(await lookups.lookUp("c") { true })
    }
}
