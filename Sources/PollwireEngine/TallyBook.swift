public import Foundation
public import NIOCore
public import PollwireCore
import Synchronization

/// The in-memory state of every poll: definition, version, counters, latest text answers, and
/// the encoded snapshots of its results.
///
/// Filled from the store at start (`load`), moved forward only by committed changes (`apply`)
/// and definition edits. Writers take one lock and move the generation; readers take no lock
/// while the generation stands (each thread keeps what it read in its `ReaderCache`).
/// Snapshots are encoded outside the lock, at most once per version and variant.
public final class TallyBook: Sendable {
    struct Entry {
        var poll: Poll
        /// The sum of `shards`: one more with every change applied.
        var version: Int64
        /// Every shard's last applied sequence (see `PollChange`).
        var shards: [Int32: Int64]
        /// Every shard's ballot chain at that sequence.
        var chains: [Int32: ChainLink] = [:]
        var tally: Tally
        var latestText: [String: [String]]
        var full: Snapshot?
        var hidden: Snapshot?
        /// Forms derived from the cached snapshots (compressed bodies, whole HTTP/1.1 heads), by
        /// variant and form (see `derived`).
        var derived: [DerivedKey: (etag: String, bytes: ByteBuffer)] = [:]
        /// Changes that skip sequences of their shard, by shard and sequence, waiting for the ones
        /// before them (a notification lost or too large to carry).
        var pending: [PollChange] = []
        /// Since when `pending` has waited; a gap that stays is closed by a resync from the store.
        var gapSince: ContinuousClock.Instant?
    }

    /// Most changes held per poll while waiting for a gap to close; beyond it they are dropped
    /// and only a resync from the store closes the gap.
    static let maxPending = 256

    private let entries = Mutex<[String: Entry]>([:])
    /// Moves on every change to what a reader may see; readers' snapshots hold while it stands.
    private let generation = Atomic<UInt64>(1)
    /// Moves only when a definition changes (not on commits): readers' definitions hold while it
    /// stands, so a vote's poll lookup takes no lock under a stream of commits.
    private let definitions = Atomic<UInt64>(1)
    /// Tells this book's entries in a thread's cache from another book's.
    private let bookID = TallyBook.nextBookID.add(1, ordering: .relaxed).newValue
    private static let nextBookID = Atomic<UInt64>(0)
    private let loaded = Atomic<Bool>(false)
    private let stale = Atomic<Bool>(false)
    /// The moments ahead when a poll opens or closes by itself.
    private let schedule = Mutex(PhaseSchedule())
    private let now: @Sendable () -> Date
    /// How many text answers per question are kept for results.
    public let latestTextLimit: Int

    public init(latestTextLimit: Int = 10, now: @escaping @Sendable () -> Date = { Date() }) {
        self.latestTextLimit = latestTextLimit
        self.now = now
    }

    /// Called with the lock held, after a change: every reader's snapshots are out of date, and
    /// their definitions too when `definitions` changed.
    private func moved(definitions: Bool) {
        if definitions { self.definitions.add(1, ordering: .releasing) }
        self.generation.add(1, ordering: .releasing)
    }

    /// This thread's cache, valid for the book as it is now.
    private func readerCache() -> ReaderCache {
        ReaderCache.current(
            book: self.bookID, generation: self.generation.load(ordering: .acquiring),
            definitions: self.definitions.load(ordering: .acquiring))
    }

    // MARK: Loading

    /// Replaces the whole book with what the store holds, then marks it loaded.
    public func load(_ polls: [StoredPoll]) {
        var fresh: [String: Entry] = [:]
        for stored in polls {
            fresh[stored.poll.id] = Entry(
                poll: stored.poll, version: stored.version, shards: stored.shards, chains: stored.chains,
                tally: stored.tally, latestText: stored.latestText.mapValues { Array($0.prefix(self.latestTextLimit)) })
        }
        self.entries.withLock {
            $0 = fresh
            self.moved(definitions: true)
        }
        let schedule = PhaseSchedule(polls.lazy.map(\.poll), after: self.now())
        self.schedule.withLock { $0 = schedule }
        self.loaded.store(true, ordering: .releasing)
    }

    /// Whether `load` has run: the server is ready only after it.
    public var isLoaded: Bool { self.loaded.load(ordering: .acquiring) }

    // MARK: Definitions

    /// The poll with `id`, if any.
    public func poll(_ id: String) -> Poll? {
        let cache = self.readerCache()
        if let poll = cache.polls[id] { return poll }
        guard let poll = self.entries.withLock({ $0[id]?.poll }) else { return nil }
        cache.polls[id] = poll
        return poll
    }

    /// Every poll, newest first.
    public func polls() -> [Poll] {
        self.entries.withLock { $0.values.map(\.poll) }.sorted {
            ($0.createdAt, $0.id) > ($1.createdAt, $1.id)
        }
    }

    /// The poll's version and number of ballots.
    public func state(of id: String) -> (version: Int64, ballots: Int64)? {
        self.entries.withLock { entries in entries[id].map { ($0.version, $0.tally.ballots) } }
    }

    /// The poll's version and its shards' ballot chains at that version (what its results publish).
    public func chains(of id: String) -> (version: Int64, chains: [Int32: ChainLink])? {
        self.entries.withLock { entries in entries[id].map { ($0.version, $0.chains) } }
    }

    /// The last sequence of one of a poll's shards the book applied (0: none yet), nil for an
    /// unknown poll.
    public func sequence(of id: String, shard: Int32) -> Int64? {
        self.entries.withLock { entries in entries[id].map { $0.shards[shard] ?? 0 } }
    }

    /// Adds a new poll or replaces a poll's definition; its counters stay.
    public func put(_ poll: Poll) {
        let now = self.now()
        self.schedule.withLock { $0.set(poll, after: now) }
        self.entries.withLock { entries in
            if var entry = entries[poll.id] {
                entry.poll = poll
                entry.full = nil
                entry.hidden = nil
                // Derived forms may carry the definition (a head's Cache-Control, labels in a
                // compressed body) under the same ETag.
                entry.derived = [:]
                entries[poll.id] = entry
            } else {
                entries[poll.id] = Entry(poll: poll, version: 0, shards: [:], tally: Tally(), latestText: [:])
            }
            self.moved(definitions: true)
        }
    }

    /// Forgets a deleted poll.
    public func remove(_ id: String) {
        self.entries.withLock {
            $0.removeValue(forKey: id)
            self.moved(definitions: true)
        }
        self.schedule.withLock { $0.remove(id) }
    }

    /// The polls that opened or closed by themselves (their `opensAt` or `closesAt` passed)
    /// since the last call: what their viewers may see has changed, though no vote did.
    public func phaseChanges() -> [String] {
        let now = self.now()
        return self.schedule.withLock { $0.due(at: now) }
    }

    // MARK: Counting

    /// Applies committed changes, each exactly once and in sequence order within its shard: a
    /// change at or below its shard's sequence is ignored (a change feed repeats this node's own
    /// commits), one that skips sequences waits in `pending` until the missing ones arrive (or a
    /// resync).
    public func apply(_ changes: [PollChange]) {
        _ = self.apply(changes, reporting: false)
    }

    /// `apply`, and per change the poll's version once it is applied (nil: not applied now): what
    /// a cluster node tells the voters of its commit (`VoteIngestor`).
    public func applyReportingVersions(_ changes: [PollChange]) -> [Int64?] {
        self.apply(changes, reporting: true)
    }

    /// Without `reporting` nothing is allocated for the answer (the empty array).
    private func apply(_ changes: [PollChange], reporting: Bool) -> [Int64?] {
        let limit = self.latestTextLimit
        return self.entries.withLock { entries in
            var versions: [Int64?] = []
            if reporting { versions.reserveCapacity(changes.count) }
            for change in changes {
                // One hash of the poll id; the entry is mutated in place: no copy of the counters.
                guard let index = entries.index(forKey: change.pollID) else {
                    if reporting { versions.append(nil) }
                    continue
                }
                let sequence = entries.values[index].shards[change.shard] ?? 0
                guard change.sequence > sequence else {
                    if reporting { versions.append(nil) }
                    continue
                }
                if change.sequence == sequence + 1 {
                    Self.apply(change, to: &entries.values[index], latestTextLimit: limit)
                    if reporting { versions.append(entries.values[index].version) }
                    if !entries.values[index].pending.isEmpty {
                        Self.drainPending(&entries.values[index], latestTextLimit: limit)
                    }
                } else {
                    Self.hold(change, in: &entries.values[index])
                    if reporting { versions.append(nil) }
                }
            }
            if !changes.isEmpty { self.moved(definitions: false) }
            return versions
        }
    }

    private static func hold(_ change: PollChange, in entry: inout Entry) {
        if entry.gapSince == nil { entry.gapSince = .now }
        guard entry.pending.count < Self.maxPending,
            !entry.pending.contains(where: { $0.shard == change.shard && $0.sequence == change.sequence })
        else { return }
        let index =
            entry.pending.firstIndex { ($0.shard, $0.sequence) > (change.shard, change.sequence) }
            ?? entry.pending.endIndex
        entry.pending.insert(change, at: index)
    }

    /// Applies the held changes that follow their shard's sequence, and drops the ones it passed.
    private static func drainPending(_ entry: inout Entry, latestTextLimit: Int) {
        var index = 0
        while index < entry.pending.count {
            let held = entry.pending[index]
            let sequence = entry.shards[held.shard] ?? 0
            if held.sequence <= sequence + 1 {
                entry.pending.remove(at: index)
                if held.sequence == sequence + 1 { Self.apply(held, to: &entry, latestTextLimit: latestTextLimit) }
                // Held changes are sorted by shard and sequence: the next of this shard is here now.
            } else {
                index += 1
            }
        }
        if entry.pending.isEmpty { entry.gapSince = nil }
    }

    /// Polls whose held changes have waited longer than `age` for the ones before them.
    public func gaps(olderThan age: Duration) -> [String] {
        let now = ContinuousClock.now
        return self.entries.withLock { entries in
            entries.compactMap { id, entry in entry.gapSince.flatMap { now - $0 > age ? id : nil } }
        }
    }

    /// Every poll's version (the sum of its shards' sequences): what a node compares with the
    /// store after it missed changes.
    public func versions() -> [String: Int64] {
        self.entries.withLock { $0.mapValues(\.version) }
    }

    /// Replaces a poll's counters with the store's when the store is ahead (or the poll is new
    /// here), then applies the held changes that follow. Returns whether anything changed.
    ///
    /// Ahead means at or past the book in every shard and past it in one: a store read may have
    /// started before a commit the book already applied from its notification, and then holds
    /// less of that shard while it holds more of another; such a read changes only the
    /// definition (the gap it was for stays open and is read again).
    @discardableResult
    public func resync(_ stored: StoredPoll) -> Bool {
        let limit = self.latestTextLimit
        let changed = self.entries.withLock { entries in
            let known = entries[stored.poll.id]
            var entry = known ?? Entry(poll: stored.poll, version: 0, shards: [:], tally: Tally(), latestText: [:])
            let ahead =
                known == nil
                || (stored.shards != entry.shards
                    && entry.shards.allSatisfy { shard, sequence in (stored.shards[shard] ?? 0) >= sequence })
            guard ahead || entry.poll != stored.poll else { return false }
            if ahead {
                entry.version = stored.version
                entry.shards = stored.shards
                entry.chains = stored.chains
                entry.tally = stored.tally
                entry.latestText = stored.latestText.mapValues { Array($0.prefix(limit)) }
            }
            entry.poll = stored.poll
            entry.full = nil
            entry.hidden = nil
            entry.derived = [:]
            Self.drainPending(&entry, latestTextLimit: limit)
            entries[stored.poll.id] = entry
            self.moved(definitions: true)
            return true
        }
        if changed {
            let now = self.now()
            self.schedule.withLock { $0.set(stored.poll, after: now) }
        }
        return changed
    }

    // MARK: Staleness

    /// Whether the counters may be behind the store (a cluster node cut off from PostgreSQL):
    /// results then say `"stale": true`.
    public var isStale: Bool { self.stale.load(ordering: .acquiring) }

    /// Marks the results stale or fresh; encoded snapshots are dropped when it changes. Returns
    /// whether it changed.
    @discardableResult
    public func setStale(_ stale: Bool) -> Bool {
        guard self.stale.exchange(stale, ordering: .acquiringAndReleasing) != stale else { return false }
        self.entries.withLock { entries in
            for id in entries.keys {
                entries[id]!.full = nil
                entries[id]!.hidden = nil
            }
            self.moved(definitions: false)
        }
        return true
    }

    private static func apply(_ change: PollChange, to entry: inout Entry, latestTextLimit: Int) {
        entry.shards[change.shard] = change.sequence
        if let chain = change.chain { entry.chains[change.shard] = chain }
        entry.version += 1
        entry.tally.apply(change.deltas)
        for answer in change.texts {
            entry.latestText[answer.question, default: []].insert(answer.text, at: 0)
            if let count = entry.latestText[answer.question]?.count, count > latestTextLimit {
                entry.latestText[answer.question]!.removeLast(count - latestTextLimit)
            }
        }
    }

    /// The tally of a poll (a copy).
    public func tally(of id: String) -> Tally? {
        self.entries.withLock { $0[id]?.tally }
    }

    // MARK: Snapshots

    /// The encoded results of a poll at its current version: full, or only the number of
    /// ballots when `hidden`. Encoded at most once per version and variant.
    ///
    /// Cost when this thread read it since the last change: no lock, no allocation. Else one lock,
    /// and when the version is new one encode and one buffer.
    public func snapshot(of id: String, hidden: Bool) -> Snapshot? {
        let cache = self.readerCache()
        let key = ReaderCache.Key(pollID: id, hidden: hidden, form: "")
        if let snapshot = cache.snapshots[key] { return snapshot }
        guard let snapshot = self.bookSnapshot(of: id, hidden: hidden) else { return nil }
        cache.snapshots[key] = snapshot
        return snapshot
    }

    /// `snapshot(of:hidden:)` from the book itself, under its lock.
    private func bookSnapshot(of id: String, hidden: Bool) -> Snapshot? {
        let stale = self.isStale
        // The cached snapshot is handed out from inside the lock: copying the entry out (poll,
        // counters, text answers) cost more than the rest of a read.
        enum Found {
            case cached(Snapshot)
            case encode(Poll, Int64, Tally, [String: [String]], [Int32: ChainLink])
        }
        let found: Found? = self.entries.withLock { entries in
            guard let entry = entries[id] else { return nil }
            if let cached = hidden ? entry.hidden : entry.full, cached.version == entry.version,
                cached.stale == stale
            {
                return .cached(cached)
            }
            return .encode(entry.poll, entry.version, entry.tally, entry.latestText, entry.chains)
        }
        let entry:
            (
                poll: Poll, version: Int64, tally: Tally, latestText: [String: [String]], chains: [Int32: ChainLink]
            )
        switch found {
        case nil: return nil
        case .cached(let snapshot): return snapshot
        case .encode(let poll, let version, let tally, let latestText, let chains):
            entry = (poll, version, tally, latestText, chains)
        }

        var results =
            hidden
            ? Results.hidden(poll: id, version: entry.version, total: entry.tally.ballots)
            : Results(poll: entry.poll, version: entry.version, tally: entry.tally, latestText: entry.latestText)
        if stale { results.stale = true }
        // The chain head of this version: what a voter's proof ends at.
        if !entry.chains.isEmpty { results.chain = BallotChain.head(entry.chains).hex }
        let snapshot = Snapshot(
            pollID: id, version: entry.version, hidden: hidden, stale: stale, body: Self.encode(results),
            compact: ResultsJSON.compact(results))
        self.entries.withLock { entries in
            guard var current = entries[id], current.version == snapshot.version, self.isStale == stale else {
                return
            }
            if hidden { current.hidden = snapshot } else { current.full = snapshot }
            entries[id] = current
        }
        return snapshot
    }

    /// Which derived form: the snapshot's variant and the form's name (a coding, `gzip` or
    /// `deflate`, or the HTTP/1.1 head the byte front writes).
    struct DerivedKey: Hashable {
        var hidden: Bool
        var form: String
    }

    /// Bytes derived from `snapshot` by `make` (its body compressed, a response head), made at
    /// most once per snapshot (version, variant, staleness) and form, and kept beside it until the
    /// poll moves on: every reader that asks for the same form gets the same bytes. Nothing is
    /// allocated for readers that do not ask.
    public func derived(
        _ snapshot: Snapshot, form: String, make: () throws -> ByteBuffer
    ) rethrows -> ByteBuffer {
        let cache = self.readerCache()
        let cacheKey = ReaderCache.Key(pollID: snapshot.pollID, hidden: snapshot.hidden, form: form)
        if let kept = cache.derived[cacheKey], kept.etag == snapshot.etag { return kept.bytes }
        let key = DerivedKey(hidden: snapshot.hidden, form: form)
        let kept = self.entries.withLock { entries in entries[snapshot.pollID]?.derived[key] }
        if let kept, kept.etag == snapshot.etag {
            cache.derived[cacheKey] = kept
            return kept.bytes
        }
        let bytes = try make()
        cache.derived[cacheKey] = (snapshot.etag, bytes)
        self.entries.withLock { entries in
            guard entries[snapshot.pollID]?.version == snapshot.version else { return }
            entries[snapshot.pollID]?.derived[key] = (snapshot.etag, bytes)
        }
        return bytes
    }

    static func encode(_ results: Results) -> ByteBuffer {
        if let written = ResultsJSON.full(results) { return written }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Results holds only strings, integers and finite doubles: encoding cannot fail.
        let data = (try? encoder.encode(results)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }
}
