import Logging
import PollwireEngine
import ServiceLifecycle

/// Loads every poll's tallies from the store into the TallyBook at start; until it has, the
/// server answers 503 `not_ready` to votes and results, and /readyz says not ready.
///
/// Tallies come from the tallies table, not from replaying ballots: start time does not grow
/// with the number of votes.
struct TallyLoader: Service {
    let store: any PollStore
    let book: TallyBook
    let logger: Logger

    func run() async throws {
        let started = ContinuousClock.now
        let polls = try await self.store.loadPolls(latestTextLimit: self.book.latestTextLimit)
        self.book.load(polls)
        self.logger.info(
            "tallies loaded", metadata: ["polls": "\(polls.count)", "duration": "\(ContinuousClock.now - started)"])
        try? await gracefulShutdown()
    }
}
