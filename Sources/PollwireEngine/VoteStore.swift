public import Foundation

/// Durable storage of ballots and tallies: the write half of the way of a vote.
///
/// Implementations: `SQLiteVoteStore`; later `PostgresVoteStore`.
public protocol VoteStore: Sendable {
    /// Stores `votes` and their tally deltas in ONE transaction and returns only after it
    /// committed durably.
    ///
    /// Dedupe, change and idempotency are decided inside that transaction: on `(poll, voter)`
    /// and `(poll, idempotency key)`. Each poll with a stored ballot gets exactly one new
    /// version per call. A poll that is missing or not open at `now` rejects its votes.
    /// Throws only when the transaction failed as a whole: then nothing of it is stored.
    func commit(_ votes: [VoteCommand], at now: Date) async throws -> CommitResult
}
