import DequeModule
public import Foundation
public import Logging
public import Metrics
public import ServiceLifecycle
import Synchronization

/// The hot path's writer: a bounded queue of submissions drained by ONE task that stores each
/// batch in one transaction (group commit), applies it to the TallyBook, then answers.
///
/// The batch grows with load: while one transaction commits (one fsync), new votes queue up
/// and all of them go into the next one, up to `maxBatch`. A submission is never split, so a
/// client's batch request is all in one transaction.
///
/// ```swift
/// let ingestor = VoteIngestor(store: store, book: book)
/// // as a Service in the application's ServiceGroup, then per request:
/// let outcomes = try await ingestor.submit([command])
/// ```
public final class VoteIngestor: Service, Sendable {
    /// Tuning of the queue and the group commit.
    public struct Configuration: Sendable {
        /// Most ballots in one transaction (a larger single submission still goes whole). Default 8192.
        public var maxBatch: Int
        /// How long the writer waits for more ballots after the first one; zero (the default)
        /// means it never waits: batches grow from what queues during the previous commit.
        public var maxDelay: Duration
        /// Most ballots waiting in the queue; beyond it `submit` fails with `.overloaded`. Default 65536.
        public var queueCapacity: Int
        /// How long a commit may take before its votes are answered `.storeUnavailable`; nil (the
        /// default, right for the embedded store) waits as long as the store does. A commit past
        /// its deadline may still complete in the store: its votes were not acknowledged, and a
        /// retry with the same Idempotency-Key replays them.
        public var commitDeadline: Duration?
        /// Failed commits in a row that open the circuit breaker. Default 3.
        public var breakerThreshold: Int
        /// How long an open breaker refuses votes at once before one commit probes the store again.
        /// Default 2 s.
        public var breakerCooldown: Duration

        public init(
            maxBatch: Int = 8192, maxDelay: Duration = .zero, queueCapacity: Int = 65_536,
            commitDeadline: Duration? = nil, breakerThreshold: Int = 3, breakerCooldown: Duration = .seconds(2)
        ) {
            self.maxBatch = max(1, maxBatch)
            self.maxDelay = maxDelay
            self.queueCapacity = max(1, queueCapacity)
            self.commitDeadline = commitDeadline
            self.breakerThreshold = max(1, breakerThreshold)
            self.breakerCooldown = breakerCooldown
        }
    }

    struct Submission {
        var votes: [VoteCommand]
        var continuation: CheckedContinuation<Result<Submitted, IngestError>, Never>
        /// When it must be answered: queued at + `commitDeadline` (nil without a deadline).
        var answerBy: ContinuousClock.Instant?
    }

    struct State {
        var queue = Deque<Submission>()
        /// Ballots in `queue`.
        var queued = 0
        var accepting = true
        /// The writer, parked while the queue is empty.
        var writer: CheckedContinuation<Void, Never>?
        /// Failed commits in a row.
        var failures = 0
        /// While set and in the future, votes are refused at once (the breaker is open).
        var openUntil: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let store: any VoteStore
    private let book: TallyBook
    private let configuration: Configuration
    private let now: @Sendable () -> Date
    private let logger: Logger
    private let metrics: IngestMetrics
    private let onCommit: @Sendable ([PollChange]) -> Void

    /// - Parameters:
    ///   - store: where batches are committed.
    ///   - book: the in-memory tallies that committed changes are applied to.
    ///   - now: the clock that decides whether a poll is open at commit time.
    ///   - metricsFactory: where batch size, commit latency, queue depth and outcomes are reported.
    ///   - onCommit: called after each commit was applied to `book` (the Hub marks polls dirty here).
    public init(
        store: any VoteStore,
        book: TallyBook,
        configuration: Configuration = Configuration(),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "pollwire.ingest"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        onCommit: @escaping @Sendable ([PollChange]) -> Void = { _ in }
    ) {
        self.store = store
        self.book = book
        self.configuration = configuration
        self.now = now
        self.logger = logger
        self.metrics = IngestMetrics(factory: metricsFactory)
        self.onCommit = onCommit
    }

    // MARK: Submitting

    /// Queues `votes` and returns their outcomes once the transaction holding them committed.
    ///
    /// Fails at once with `.overloaded` when the queue cannot take them all, and with
    /// `.shuttingDown` once shutdown began; with `.storageFailure` when the commit failed.
    /// Cost: one lock, one continuation; no per-vote allocation beyond the command itself.
    public func submit(_ votes: [VoteCommand]) async throws(IngestError) -> [VoteOutcome] {
        try await self.submitForReceipts(votes).outcomes
    }

    /// What a submission comes back with: an outcome per vote, in order, and per vote its
    /// ballot's place in the chain when it was stored now (empty when the store does not chain).
    public struct Submitted: Sendable {
        public var outcomes: [VoteOutcome]
        public var receipts: ArraySlice<BallotReceipt?>
    }

    /// `submit`, with the stored ballots' chain receipts.
    public func submitForReceipts(_ votes: [VoteCommand]) async throws(IngestError) -> Submitted {
        if votes.isEmpty { return Submitted(outcomes: [], receipts: []) }
        let capacity = self.configuration.queueCapacity
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Submitted, IngestError>, Never>) in
            let outcome: Result<CheckedContinuation<Void, Never>?, IngestError> = self.state.withLock { state in
                guard state.accepting else {
                    return .failure(IngestError(.shuttingDown, "the server is shutting down"))
                }
                if let openUntil = state.openUntil, ContinuousClock.now < openUntil {
                    return .failure(IngestError(.storeUnavailable, "the store is unavailable"))
                }
                // An empty queue takes any one submission, so an oversized batch is not starved.
                guard state.queued == 0 || state.queued + votes.count <= capacity else {
                    return .failure(IngestError(.overloaded, "the vote queue is full"))
                }
                state.queue.append(
                    Submission(
                        votes: votes, continuation: continuation,
                        answerBy: self.configuration.commitDeadline.map { ContinuousClock.now.advanced(by: $0) }))
                state.queued += votes.count
                let writer = state.writer
                state.writer = nil
                return .success(writer)
            }
            switch outcome {
            case .success(let writer):
                writer?.resume()
            case .failure(let error):
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// Whether new votes are taken (false once shutdown began).
    public var isAccepting: Bool { self.state.withLock { $0.accepting } }

    /// False while the circuit breaker is open: the store failed `breakerThreshold` commits in a
    /// row and the cool-down has not passed yet.
    public var isStoreAvailable: Bool {
        self.state.withLock { state in state.openUntil.map { ContinuousClock.now >= $0 } ?? true }
    }

    /// Ballots waiting in the queue now.
    public var queuedBallots: Int { self.state.withLock { $0.queued } }

    // MARK: Writing

    /// Runs the writer until graceful shutdown, then commits and answers everything queued.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                while let batch = await self.nextBatch() {
                    await self.commit(batch)
                }
            } onCancel: {
                self.stopAccepting()
            }
        } onGracefulShutdown: {
            self.stopAccepting()
        }
        // Cancelled hard while votes were queued: they were never stored, say so.
        let rest = self.state.withLock { state in
            defer {
                state.queue.removeAll()
                state.queued = 0
            }
            return Array(state.queue)
        }
        for submission in rest {
            submission.continuation.resume(returning: .failure(IngestError(.shuttingDown, "the server stopped")))
        }
    }

    private func stopAccepting() {
        let writer = self.state.withLock { state in
            state.accepting = false
            defer { state.writer = nil }
            return state.writer
        }
        writer?.resume()
    }

    /// The next batch: whatever is queued, up to `maxBatch` ballots. Waits while the queue is
    /// empty; nil once shutdown began and the queue is drained.
    private func nextBatch() async -> [Submission]? {
        while true {
            if Task.isCancelled { return nil }
            enum Step {
                case take([Submission])
                case wait
                case stop
            }
            let step: Step = self.state.withLock { state in
                if !state.queue.isEmpty { return .take(Self.take(from: &state, limit: self.configuration.maxBatch)) }
                return state.accepting ? .wait : .stop
            }
            switch step {
            case .take(var batch):
                let ballots = batch.reduce(0) { $0 + $1.votes.count }
                if self.configuration.maxDelay > .zero, ballots < self.configuration.maxBatch {
                    try? await Task.sleep(for: self.configuration.maxDelay)
                    let more = self.state.withLock {
                        Self.take(from: &$0, limit: self.configuration.maxBatch - ballots)
                    }
                    batch.append(contentsOf: more)
                }
                return batch
            case .stop:
                return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { state in
                        if !state.queue.isEmpty || !state.accepting { return true }
                        state.writer = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    private static func take(from state: inout State, limit: Int) -> [Submission] {
        var batch: [Submission] = []
        var ballots = 0
        while let first = state.queue.first, batch.isEmpty || ballots + first.votes.count <= limit {
            state.queue.removeFirst()
            ballots += first.votes.count
            state.queued -= first.votes.count
            batch.append(first)
        }
        return batch
    }

    struct CommitDeadlineExceeded: Error {}

    /// A commit's continuation, resumed by whichever comes first: the store or the deadline.
    final class AnswerOnce: Sendable {
        private let continuation = Mutex<CheckedContinuation<CommitResult, any Error>?>(nil)
        func set(_ continuation: CheckedContinuation<CommitResult, any Error>) {
            self.continuation.withLock { $0 = continuation }
        }
        func take() -> CheckedContinuation<CommitResult, any Error>? { self.continuation.withLock { $0.take() } }
    }

    /// The store's commit, given up at the batch's earliest answer-by time. The commit runs in its own task so
    /// that a store stuck on a dead connection cannot hold the writer: the caller is answered
    /// at the deadline and the task is cancelled (and may still finish on its own).
    private func commitWithinDeadline(
        _ votes: [VoteCommand], answerBy: ContinuousClock.Instant?
    ) async throws -> CommitResult {
        let now = self.now()
        guard let answerBy else { return try await self.store.commit(votes, at: now) }
        let deadline = answerBy - ContinuousClock.now
        let store = self.store
        let answer = AnswerOnce()
        return try await withCheckedThrowingContinuation { continuation in
            answer.set(continuation)
            let work = Task {
                let result: Result<CommitResult, any Error>
                do {
                    result = .success(try await store.commit(votes, at: now))
                } catch {
                    result = .failure(error)
                }
                answer.take()?.resume(with: result)
            }
            let timer = Task {
                try await Task.sleep(for: deadline)
                if let continuation = answer.take() {
                    work.cancel()
                    continuation.resume(throwing: CommitDeadlineExceeded())
                }
            }
            // The timer ends with the commit, so a fast store leaves no sleeping task behind.
            Task {
                _ = await work.result
                timer.cancel()
            }
        }
    }

    private func recordFailure() {
        let cooldown = self.configuration.breakerCooldown
        let opened = self.state.withLock { state in
            state.failures += 1
            guard state.failures >= self.configuration.breakerThreshold else { return false }
            state.openUntil = ContinuousClock.now.advanced(by: cooldown)
            return true
        }
        if opened { self.logger.warning("circuit breaker open: votes refused", metadata: ["for": "\(cooldown)"]) }
    }

    private func recordSuccess() {
        let closed = self.state.withLock { state in
            defer {
                state.failures = 0
                state.openUntil = nil
            }
            return state.openUntil != nil
        }
        if closed { self.logger.notice("circuit breaker closed: the store answers again") }
    }

    private func commit(_ batch: [Submission]) async {
        var batch = batch
        // A vote waits at most `commitDeadline` in all, queue included: the ones whose time ran
        // out while an earlier commit hung are answered now, without trying (nothing stored).
        if self.configuration.commitDeadline != nil {
            let now = ContinuousClock.now
            let expired = batch.filter { $0.answerBy.map { $0 <= now } ?? false }
            if !expired.isEmpty {
                batch.removeAll { $0.answerBy.map { $0 <= now } ?? false }
                for submission in expired {
                    submission.continuation.resume(
                        returning: .failure(IngestError(.storeUnavailable, "the store did not answer in time")))
                }
                if batch.isEmpty { return }
            }
        }
        var votes: [VoteCommand] = []
        votes.reserveCapacity(batch.reduce(0) { $0 + $1.votes.count })
        for submission in batch { votes.append(contentsOf: submission.votes) }
        self.metrics.batchSize.record(votes.count)
        self.metrics.queueDepth.record(self.queuedBallots)

        let started = ContinuousClock.now
        let result: CommitResult
        do {
            result = try await self.commitWithinDeadline(
                votes, answerBy: batch.compactMap(\.answerBy).min())
        } catch {
            self.logger.error("group commit failed", metadata: ["error": "\(error)", "ballots": "\(votes.count)"])
            self.metrics.commitFailures.increment()
            let failure =
                error is CommitDeadlineExceeded
                ? IngestError(.storeUnavailable, "the store did not answer in time")
                : IngestError(.storageFailure, "the vote could not be stored")
            self.recordFailure()
            for submission in batch { submission.continuation.resume(returning: .failure(failure)) }
            return
        }
        self.recordSuccess()
        self.metrics.commitDuration.recordNanoseconds(
            Int64((ContinuousClock.now - started) / .nanoseconds(1)))

        // Durable from here on: count it in memory, then acknowledge.
        // One shard (the embedded store): its sequences are the versions, nothing to renumber.
        var renumbered: [String: (sequence: Int64, version: Int64)] = [:]
        if result.changes.contains(where: { $0.shard != 0 }) {
            renumbered = Self.renumbering(
                result.changes, versions: self.book.applyReportingVersions(result.changes))
        } else {
            self.book.apply(result.changes)
        }
        self.onCommit(result.changes)
        var offset = 0
        for submission in batch {
            var outcomes = Array(result.outcomes[offset..<offset + submission.votes.count])
            if !renumbered.isEmpty {
                for index in outcomes.indices {
                    if let change = renumbered[submission.votes[index].pollID] {
                        outcomes[index] = Self.renumber(outcomes[index], from: change.sequence, to: change.version)
                    }
                }
            }
            let receipts =
                result.receipts.isEmpty ? [] : result.receipts[offset..<offset + submission.votes.count]
            offset += submission.votes.count
            submission.continuation.resume(returning: .success(Submitted(outcomes: outcomes, receipts: receipts)))
        }
        self.metrics.count(result.outcomes)
    }

    /// A store numbers the votes of a commit with its shard's sequence (see `PollChange`); the
    /// voter is told the poll's version that first holds the vote here: the book's, once the
    /// commit is applied. With one shard (the embedded store) the two are the same and nothing is
    /// renumbered. Earlier ballots (replays, duplicates) keep the number they were stored with.
    static func renumbering(
        _ changes: [PollChange], versions: [Int64?]
    ) -> [String: (sequence: Int64, version: Int64)] {
        var renumbered: [String: (sequence: Int64, version: Int64)] = [:]
        for (change, version) in zip(changes, versions) {
            if let version, version != change.sequence { renumbered[change.pollID] = (change.sequence, version) }
        }
        return renumbered
    }

    static func renumber(_ outcome: VoteOutcome, from sequence: Int64, to version: Int64) -> VoteOutcome {
        switch outcome {
        case .accepted(sequence, let replayed): .accepted(version: version, replayed: replayed)
        case .duplicate(sequence): .duplicate(version: version)
        case .changed(sequence): .changed(version: version)
        default: outcome
        }
    }
}
