import Foundation
import NIOCore
public import PollwireCore
import Synchronization

/// The in-memory state of every poll: definition, version, counters, latest text answers, and
/// the encoded snapshots of its results.
///
/// Filled from the store at start (`load`), moved forward only by committed changes (`apply`)
/// and definition edits. Reads take one lock; snapshots are encoded outside it, at most once
/// per version and variant.
public final class TallyBook: Sendable {
    struct Entry {
        var poll: Poll
        var version: Int64
        var tally: Tally
        var latestText: [String: [String]]
        var full: Snapshot?
        var hidden: Snapshot?
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let loaded = Atomic<Bool>(false)
    /// How many text answers per question are kept for results.
    public let latestTextLimit: Int

    public init(latestTextLimit: Int = 10) {
        self.latestTextLimit = latestTextLimit
    }

    // MARK: Loading

    /// Replaces the whole book with what the store holds, then marks it loaded.
    public func load(_ polls: [StoredPoll]) {
        var fresh: [String: Entry] = [:]
        for stored in polls {
            fresh[stored.poll.id] = Entry(
                poll: stored.poll, version: stored.version, tally: stored.tally,
                latestText: stored.latestText.mapValues { Array($0.prefix(self.latestTextLimit)) })
        }
        self.entries.withLock { $0 = fresh }
        self.loaded.store(true, ordering: .releasing)
    }

    /// Whether `load` has run: the server is ready only after it.
    public var isLoaded: Bool { self.loaded.load(ordering: .acquiring) }

    // MARK: Definitions

    /// The poll with `id`, if any.
    public func poll(_ id: String) -> Poll? {
        self.entries.withLock { $0[id]?.poll }
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

    /// Adds a new poll or replaces a poll's definition; its counters stay.
    public func put(_ poll: Poll) {
        self.entries.withLock { entries in
            if var entry = entries[poll.id] {
                entry.poll = poll
                entry.full = nil
                entry.hidden = nil
                entries[poll.id] = entry
            } else {
                entries[poll.id] = Entry(poll: poll, version: 0, tally: Tally(), latestText: [:])
            }
        }
    }

    /// Forgets a deleted poll.
    public func remove(_ id: String) {
        _ = self.entries.withLock { $0.removeValue(forKey: id) }
    }

    // MARK: Counting

    /// Applies committed changes. A change older than what the book holds is ignored, so
    /// applying the same change twice (as a change feed may) does nothing.
    public func apply(_ changes: [PollChange]) {
        let limit = self.latestTextLimit
        self.entries.withLock { entries in
            for change in changes {
                guard let version = entries[change.pollID]?.version, change.version > version else { continue }
                // Mutated in place through the dictionary: no copy of the counters.
                Self.apply(change, to: &entries[change.pollID]!, latestTextLimit: limit)
            }
        }
    }

    private static func apply(_ change: PollChange, to entry: inout Entry, latestTextLimit: Int) {
        entry.version = change.version
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
    /// Cost when cached: one lock, no allocation. When not: one JSON encode and one buffer.
    public func snapshot(of id: String, hidden: Bool) -> Snapshot? {
        let found: (Entry, Snapshot?)? = self.entries.withLock { entries in
            guard let entry = entries[id] else { return nil }
            return (entry, hidden ? entry.hidden : entry.full)
        }
        guard let (entry, cached) = found else { return nil }
        if let cached, cached.version == entry.version { return cached }

        let results =
            hidden
            ? Results.hidden(poll: id, version: entry.version, total: entry.tally.ballots)
            : Results(poll: entry.poll, version: entry.version, tally: entry.tally, latestText: entry.latestText)
        let snapshot = Snapshot(
            pollID: id, version: entry.version, hidden: hidden, body: Self.encode(results))
        self.entries.withLock { entries in
            guard var current = entries[id], current.version == snapshot.version else { return }
            if hidden { current.hidden = snapshot } else { current.full = snapshot }
            entries[id] = current
        }
        return snapshot
    }

    static func encode(_ results: Results) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Results holds only strings, integers and finite doubles: encoding cannot fail.
        let data = (try? encoder.encode(results)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }
}
