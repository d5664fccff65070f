import Benchmark
import Foundation
import Metrics
import NIOCore
import PollwireCore
import PollwireEngine

// The hot path of a vote and of a results update, piece by piece. Allocation counts are exact
// and the same on every machine: they carry the checked-in thresholds (Thresholds/). Times
// vary with the machine and are reported, not checked.

/// A poll like the ones people embed: one single-choice question with four options.
let poll = Poll(
    id: "bench", title: "Where?",
    questions: [
        Question(
            id: "q1", kind: .single, prompt: "Lunch?",
            options: [
                .init(id: "a", label: "A"), .init(id: "b", label: "B"), .init(id: "c", label: "C"),
                .init(id: "d", label: "D"),
            ])
    ],
    settings: PollSettings(dedupe: .none), createdAt: Date(), updatedAt: Date())

let voteBody = Array(#"{"voter":"u-17","answers":{"q1":["b"]}}"#.utf8)

/// The body of a single vote request, as the HTTP layer decodes it (`BallotJSON`, at the bytes).
func decodeVote() throws -> VoteBody {
    guard let body = voteBody.withUnsafeBytes({ BallotJSON.vote($0) }) else { throw CancellationError() }
    return body
}

/// A store that commits at once: the ingestor's own cost, without the disk.
struct MemoryVoteStore: VoteStore {
    let versions = Versions()

    func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult {
        let version = self.versions.next()
        var deltas: [TallyKey: Int64] = [:]
        for vote in votes { for delta in vote.ballot.deltas() { deltas[delta.key, default: 0] += delta.amount } }
        return CommitResult(
            outcomes: votes.map { _ in .accepted(version: version, replayed: false) },
            changes: [
                PollChange(
                    pollID: "bench", sequence: version,
                    deltas: deltas.map { TallyDelta(key: $0.key, amount: $0.value) },
                    texts: [])
            ])
    }
}

final class Versions: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 0
    func next() -> Int64 {
        self.lock.withLock {
            self.value += 1; return self.value
        }
    }
}

/// A live viewer that counts what it is offered and does nothing else.
final class CountingSubscriber: LiveSubscriber, @unchecked Sendable {
    var offers = 0
    func offer(_ frame: LiveFrame) { self.offers += 1 }
    func ping() {}
    var writingSince: ContinuousClock.Instant? { nil }
    func close(reason: String) {}
    func hasVoted(_ pollID: String) -> Bool { false }
}

func loadedBook() -> TallyBook {
    let book = TallyBook()
    book.load([StoredPoll(poll: poll, version: 0, tally: Tally(), latestText: [:])])
    return book
}

/// Fixtures built once and shared by every sample, so samples measure the operation alone.
final class Fixtures: @unchecked Sendable {
    let book = loadedBook()
    let hub: Hub
    let subscribers: [CountingSubscriber]
    let limiter = RateLimiter(capacity: 100_000)
    let keys = (0..<1000).map { "v-ip:203.0.113.\($0)" }
    var version: Int64 = 0
    var index = 0

    init() {
        let hubBook = loadedBook()
        self.hub = Hub(book: hubBook)
        self.subscribers = (0..<10_000).map { _ in CountingSubscriber() }
        for subscriber in self.subscribers { self.hub.subscribe(subscriber, to: "bench") }
        self.hubBook = hubBook
    }

    let hubBook: TallyBook

    func nextVersion() -> Int64 {
        self.version += 1
        return self.version
    }
}

let fixtures = Fixtures()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        maxDuration: .seconds(2),
        maxIterations: 100_000,
        thresholds: [.mallocCountTotal: .init(relative: [.p90: 5.0], absolute: [.p90: 2])]
    )

    // The way of a vote up to the queue: decode the body, validate against the definition.
    Benchmark("VoteDecodeValidate") { benchmark in
        for _ in benchmark.scaledIterations {
            let body = try decodeVote()
            blackHole(try poll.ballot(answers: body.answers))
        }
    }

    // ... and through the ingestor (queue, one writer, group commit to a store that commits at
    // once, tallies applied): the cost of the engine around the disk. One closure runs many
    // votes, so the ingestor is set up once per sample.
    Benchmark(
        "VoteIngestPer1000",
        configuration: .init(maxIterations: 2_000, thresholds: [.mallocCountTotal: .init(relative: [.p90: 5.0])])
    ) { benchmark in
        let ingestor = VoteIngestor(store: MemoryVoteStore(), book: fixtures.book)
        let writer = Task { try await ingestor.run() }
        benchmark.startMeasurement()
        for _ in 0..<1000 {
            let body = try decodeVote()
            let ballot = try poll.ballot(answers: body.answers)
            let command = VoteCommand(
                pollID: "bench", voter: nil, idempotencyKey: nil, ballot: ballot, allowChange: false)
            blackHole(try await ingestor.submit([command]))
        }
        benchmark.stopMeasurement()
        writer.cancel()
    }

    // A commit's changes applied to the in-memory tallies.
    Benchmark("TallyApply") { benchmark in
        let delta = TallyDelta(key: TallyKey(question: "q1", key: "b"), amount: 1)
        for _ in benchmark.scaledIterations {
            let version = fixtures.nextVersion()
            fixtures.book.apply([PollChange(pollID: "bench", sequence: version, deltas: [delta], texts: [])])
        }
    }

    // A new version: applied, then its results encoded (once per version; every read after that
    // is a reference to the same bytes).
    Benchmark("TallyApplyAndSnapshotEncode") { benchmark in
        let delta = TallyDelta(key: TallyKey(question: "q1", key: "a"), amount: 1)
        for _ in benchmark.scaledIterations {
            let version = fixtures.nextVersion()
            fixtures.book.apply([PollChange(pollID: "bench", sequence: version, deltas: [delta], texts: [])])
            blackHole(fixtures.book.snapshot(of: "bench", hidden: false))
        }
    }

    // One publish tick of the Hub after a commit: the poll marked dirty, its frame built once
    // (apply + encode included), offered to 10,000 viewers.
    Benchmark("HubPublishTo10kSubscribers", configuration: .init(maxIterations: 5_000)) {
        benchmark in
        let delta = TallyDelta(key: TallyKey(question: "q1", key: "c"), amount: 1)
        for _ in benchmark.scaledIterations {
            let change = PollChange(pollID: "bench", sequence: fixtures.nextVersion(), deltas: [delta], texts: [])
            fixtures.hubBook.apply([change])
            fixtures.hub.changed([change])
            fixtures.hub.publish()
        }
    }

    // One rate-limit check (GCRA) on a key that is already known: the per-request cost.
    Benchmark("RateLimiterCheck") { benchmark in
        let rule = RateLimiter.Rule(rate: 1_000_000, burst: 1_000_000)
        for _ in benchmark.scaledIterations {
            fixtures.index = (fixtures.index + 1) % fixtures.keys.count
            blackHole(fixtures.limiter.check(fixtures.keys[fixtures.index], rule: rule))
        }
    }
}
