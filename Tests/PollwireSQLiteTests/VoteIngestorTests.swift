import Foundation
import Logging
import PollwireCore
import PollwireEngine
import PollwireSQLite
import PropertyBased
import ServiceLifecycle
import Synchronization
import Testing

/// The real SQLite store behind a gate the test opens: lets a test hold the writer inside a
/// commit to fill the queue, or to shut down with votes in flight.
final class GatedVoteStore: VoteStore {
    let base: any VoteStore
    let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
    let entered = Atomic<Int>(0)
    let closed = Atomic<Bool>(true)

    init(base: any VoteStore) { self.base = base }

    func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        self.entered.add(1, ordering: .sequentiallyConsistent)
        if self.closed.load(ordering: .sequentiallyConsistent) {
            await withCheckedContinuation { continuation in
                let open = self.gate.withLock { gate -> Bool in
                    if !self.closed.load(ordering: .sequentiallyConsistent) { return true }
                    gate = continuation
                    return false
                }
                if open { continuation.resume() }
            }
        }
        return try await self.base.commit(votes, at: now)
    }

    func open() {
        self.closed.store(false, ordering: .sequentiallyConsistent)
        self.gate.withLock { gate in
            gate?.resume()
            gate = nil
        }
    }
}

/// Runs `ingestor` in a ServiceGroup for the duration of `body`, then shuts it down gracefully.
func withRunningIngestor<T: Sendable>(
    _ ingestor: VoteIngestor, _ body: @Sendable (ServiceGroup) async throws -> T
) async throws -> T {
    let group = ServiceGroup(services: [ingestor], logger: Logger(label: "test"))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        let value = try await body(group)
        await group.triggerGracefulShutdown()
        for try await _ in tasks {}
        return value
    }
}

func waitUntil(_ condition: () -> Bool) async throws {
    for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
    #expect(condition())
}

@Suite struct VoteIngestorTests {
    /// N voters each vote K times concurrently, submitted in a shuffled order: the tally counts
    /// each voter exactly once, equals a recount of the stored ballots, and equals what a restart
    /// loads. The seed fixes the submit order and the batch size; how the tasks are scheduled is
    /// not seeded, so a failing case replays its inputs, not necessarily its interleaving.
    @Test func concurrentVotersAreCountedOnce() async throws {
        await propertyCheck(
            count: 25, input: Gen.int(in: 1...40), Gen.int(in: 1...6), Gen.int(in: 0...1_000_000)
        ) { voters, times, seed in
            do {
                let store = try TestStore()
                defer { store.remove() }
                let poll = lunchPoll()
                try await store.polls.insert(poll)
                let book = TallyBook()
                book.load(try await store.polls.loadPolls(latestTextLimit: 10))
                let ingestor = VoteIngestor(
                    store: store.votes, book: book, configuration: .init(maxBatch: 1 + seed % 64))
                let outcomes = try await withRunningIngestor(ingestor) { _ in
                    try await withThrowingTaskGroup(of: [VoteOutcome].self) { group in
                        var generator = SplitMix64(seed: UInt64(seed))
                        var jobs = (0..<voters).flatMap { voter in (0..<times).map { _ in voter } }
                        jobs.shuffle(using: &generator)
                        for voter in jobs {
                            // Every voter always picks the same option: repeats are duplicates.
                            let command = try vote(poll, voter: "v:\(voter)", voter % 2 == 0 ? "a" : "b")
                            group.addTask { try await ingestor.submit([command]) }
                        }
                        return try await group.reduce(into: []) { $0 += $1 }
                    }
                }
                let accepted = outcomes.filter { if case .accepted = $0 { true } else { false } }.count
                #expect(accepted == voters)
                #expect(outcomes.count == voters * times)
                #expect(book.tally(of: poll.id)?.ballots == Int64(voters))
                #expect(book.tally(of: poll.id) == (try store.recount(poll)))
                #expect(try store.storedTally(poll.id) == (try store.recount(poll)))
            } catch {
                Issue.record(error)
            }
        }
    }

    @Test func aFullQueueShedsLoadAtOnce() async throws {
        let (store, poll, book) = try await TestStore.withPoll()
        defer { store.remove() }
        let gated = GatedVoteStore(base: store.votes)
        let ingestor = VoteIngestor(store: gated, book: book, configuration: .init(maxBatch: 1, queueCapacity: 3))
        try await withRunningIngestor(ingestor) { _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The first vote is taken by the writer and held at the gate; three more fill the queue.
                for voter in 0..<4 {
                    let command = try vote(poll, voter: "v:\(voter)", "a")
                    group.addTask { _ = try await ingestor.submit([command]) }
                    if voter == 0 { try await waitUntil { gated.entered.load(ordering: .sequentiallyConsistent) == 1 } }
                }
                try await waitUntil { ingestor.queuedBallots == 3 }
                await #expect(throws: IngestError(.overloaded, "the vote queue is full")) {
                    try await ingestor.submit([try vote(poll, voter: "v:9", "a")])
                }
                gated.open()
                try await group.waitForAll()
            }
        }
        #expect(book.tally(of: poll.id)?.ballots == 4)
    }

    @Test func gracefulShutdownCommitsWhatIsQueuedAndRefusesNewVotes() async throws {
        let (store, poll, book) = try await TestStore.withPoll()
        defer { store.remove() }
        let gated = GatedVoteStore(base: store.votes)
        let ingestor = VoteIngestor(store: gated, book: book, configuration: .init(maxBatch: 2))
        let group = ServiceGroup(services: [ingestor], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: [VoteOutcome]?.self) { tasks in
            tasks.addTask {
                try await group.run()
                return nil
            }
            for voter in 0..<10 {
                let command = try vote(poll, voter: "v:\(voter)", "b")
                tasks.addTask { try await ingestor.submit([command]) }
            }
            try await waitUntil { ingestor.queuedBallots >= 8 }
            await group.triggerGracefulShutdown()
            try await waitUntil { !ingestor.isAccepting }
            let refused = await #expect(throws: IngestError.self) {
                try await ingestor.submit([try vote(poll, voter: "v:x", "a")])
            }
            #expect(refused?.code == .shuttingDown)
            gated.open()
            var versions: [Int64] = []
            for try await outcomes in tasks {
                guard let outcomes else { continue }
                guard outcomes.count == 1, case .accepted(let version, replayed: false) = outcomes[0] else {
                    Issue.record("a queued vote was not accepted: \(outcomes)")
                    continue
                }
                versions.append(version)
            }
            // Every queued vote committed: one version per commit of at most maxBatch (2) votes,
            // numbered from 1 without a gap, the last one the book's.
            #expect(versions.count == 10)
            let commits = Dictionary(grouping: versions, by: { $0 })
            #expect(commits.values.allSatisfy { $0.count <= 2 })
            #expect(Set(versions) == Set(1...Int64(commits.count)))
            #expect(book.state(of: poll.id)?.version == Int64(commits.count))
        }
        #expect(try store.storedTally(poll.id).ballots == 10)
    }
}
