import PollwireCore
public import ServiceLifecycle

/// What a cluster node hears of every node's commits, its own included: a service that keeps
/// the TallyBook in step with a shared store (PostgreSQL's LISTEN/NOTIFY in `PollwirePostgres`).
///
/// While it is cut off from the store it marks the book stale and says it is not synced: the
/// node then serves results from memory, marked stale, and reports not ready.
public protocol ChangeFeed: Service {
    /// True once the feed listens and the book has caught up with the store since it (re)connected.
    var isSynced: Bool { get }

    /// Looks up in the store a poll the book does not know: another node may have created it a
    /// moment ago, before its notification arrived here. True when the book holds it now.
    /// Callers asking for the same poll share one lookup (`CatchUpLookups`); at most a few polls
    /// are looked up at once, and ids no poll can have are not looked up.
    func catchUp(_ pollID: String) async -> Bool
}

/// Where a change feed delivers: the book, and who must hear that a poll moved.
public struct ChangeSink: Sendable {
    public let book: TallyBook
    /// Called with the polls whose results or definition changed (the Hub publishes them, the
    /// CDN purger purges them), or with every poll when the book turned stale or fresh.
    public let changed: @Sendable ([String]) -> Void

    public init(book: TallyBook, changed: @escaping @Sendable ([String]) -> Void) {
        self.book = book
        self.changed = changed
    }

    /// Applies changes another node (or this one) committed, in version order.
    public func receive(_ changes: [PollChange]) {
        self.book.apply(changes)
        self.changed(changes.map(\.pollID))
    }

    /// Replaces a poll's state with the store's (it was missed, or its definition changed).
    public func resync(_ stored: StoredPoll) {
        if self.book.resync(stored) { self.changed([stored.poll.id]) }
    }

    /// Forgets a poll another node deleted.
    public func removed(_ pollID: String) {
        guard self.book.poll(pollID) != nil else { return }
        self.book.remove(pollID)
        self.changed([pollID])
    }

    /// Marks the book stale (cut off from the store) or fresh, and republishes every poll once.
    public func setStale(_ stale: Bool) {
        if self.book.setStale(stale) { self.changed(Array(self.book.versions().keys)) }
    }
}
