import Foundation
public import Logging
import PollwireCore
public import PollwireEngine
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// `ChangeFeed` on PostgreSQL's LISTEN/NOTIFY: every node hears every commit (its own too)
/// on the `pollwire` channel, in commit order, and applies it to its TallyBook.
///
/// After the LISTEN connection drops the node is stale and not synced; it reconnects with
/// exponential backoff (100 ms doubling to 5 s), LISTENs again, compares every poll's version
/// with the store's and reloads the polls it missed, and only then says it is synced. Changes
/// that arrive ahead of a missing one wait in the book; a gap still open after `gapTimeout`
/// (a lost or oversized notification) is closed by reloading that poll.
public final class PostgresChangeFeed: ChangeFeed, Sendable {
    private let store: PostgresPollStore
    private let sink: ChangeSink
    private let logger: Logger
    private let synced = Atomic<Bool>(false)
    private let gapTimeout: Duration
    /// Store lookups of unknown polls (`catchUp`): one per poll, at most `maxCatchUps` polls at once.
    private let catchUps = CatchUpLookups(limit: maxCatchUps)
    static let maxCatchUps = 4

    public init(
        database: PostgresDatabase, sink: ChangeSink, gapTimeout: Duration = .milliseconds(500),
        logger: Logger = Logger(label: "pollwire.feed")
    ) {
        self.store = PostgresPollStore(database: database)
        self.sink = sink
        self.logger = logger
        self.gapTimeout = gapTimeout
    }

    public var isSynced: Bool { self.synced.load(ordering: .acquiring) }

    public func run() async throws {
        // The loader fills the book first; the first resync after LISTEN covers what it missed.
        while !self.sink.book.isLoaded {
            try await Task.sleep(for: .milliseconds(20))
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.listenForever() }
                group.addTask { await self.closeGapsForever() }
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.synced.store(false, ordering: .releasing)
        }
    }

    private func listenForever() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await self.store.client.withConnection { connection in
                    try await connection.listen(on: ChangeNotice.channel) { notifications in
                        try await self.resyncAll()
                        self.synced.store(true, ordering: .releasing)
                        self.sink.setStale(false)
                        backoff = .milliseconds(100)
                        self.logger.info("listening for other nodes' commits")
                        for try await notification in notifications {
                            await self.handle(notification.payload)
                        }
                    }
                }
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                self.lost("the LISTEN connection ended")
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                self.lost("\(error)")
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    private func lost(_ reason: String) {
        if self.synced.exchange(false, ordering: .acquiringAndReleasing) {
            self.logger.warning(
                "change feed lost; results are stale until it is back", metadata: ["reason": "\(reason)"])
        }
        self.sink.setStale(true)
    }

    private func handle(_ payload: String) async {
        guard let notice = ChangeNotice.read(payload) else {
            self.logger.warning("unreadable notification", metadata: ["payload": "\(payload.prefix(200))"])
            return
        }
        if let change = notice.change {
            self.sink.receive([change])
        } else if notice.d == true {
            await self.reload(notice.p)
        } else if let sequence = notice.v,
            sequence > (self.sink.book.sequence(of: notice.p, shard: notice.s ?? 0) ?? .max)
        {
            // Too large to carry: read the poll.
            await self.reload(notice.p)
        }
    }

    public func catchUp(_ pollID: String) async -> Bool {
        // An unsynced feed's store is out of reach; an id no poll can have is not worth the trip.
        guard self.isSynced, Identifier.isValid(pollID) else { return false }
        return await self.catchUps.lookUp(pollID) {
            await self.reload(pollID)
            return self.sink.book.poll(pollID) != nil
        }
    }

    /// Reloads one poll from the store: definition, version, counters.
    private func reload(_ pollID: String) async {
        do {
            if let stored = try await self.store.loadPoll(pollID, latestTextLimit: self.sink.book.latestTextLimit) {
                self.sink.resync(stored)
            } else {
                self.sink.removed(pollID)
            }
        } catch {
            self.logger.warning("could not reload a poll", metadata: ["poll": "\(pollID)", "error": "\(error)"])
        }
    }

    /// Compares every poll's version with the store's; reloads the ones behind, new or gone.
    private func resyncAll() async throws {
        let stored = try await self.store.versions()
        let known = self.sink.book.versions()
        var reloaded = 0
        for (id, version) in stored where known[id].map({ $0 < version }) ?? true {
            if let poll = try await self.store.loadPoll(id, latestTextLimit: self.sink.book.latestTextLimit) {
                self.sink.resync(poll)
                reloaded += 1
            }
        }
        for id in known.keys where stored[id] == nil { self.sink.removed(id) }
        if reloaded > 0 { self.logger.info("resynced polls from the store", metadata: ["polls": "\(reloaded)"]) }
    }

    private func closeGapsForever() async {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: self.gapTimeout / 2)
            guard self.isSynced else { continue }
            for pollID in self.sink.book.gaps(olderThan: self.gapTimeout) {
                self.logger.notice(
                    "a change did not arrive in time; reloading the poll", metadata: ["poll": "\(pollID)"])
                await self.reload(pollID)
            }
        }
    }
}
