import NIOCore
import PollwireCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one thread last read of a `TallyBook`: definitions, snapshots and the forms derived from
/// them, valid while the book's generation has not moved. Readers on different threads (every
/// event loop and pool thread has its own) take no lock and write no shared memory while nothing
/// changes: a read is one atomic load of the generation, a thread-local lookup and a dictionary
/// lookup. Any change to what a reader may see (a commit applied, a definition, a resync,
/// staleness) moves the generation, and each thread then starts again from the book, under its
/// lock, once per poll it reads.
///
/// The generation is loaded before the book is read, so what a thread keeps is never older than
/// the generation it is kept under. Thread-only: a Swift task uses it only within a synchronous
/// call, never across a suspension.
final class ReaderCache {
    struct Key: Hashable {
        var pollID: String
        var hidden: Bool
        var form: String
    }

    /// Most polls a thread keeps; past it the thread starts over.
    static let capacity = 4096

    private(set) var book: UInt64 = 0
    private(set) var generation: UInt64 = 0
    private(set) var definitions: UInt64 = 0
    var polls: [String: Poll] = [:]
    var snapshots: [Key: Snapshot] = [:]
    var derived: [Key: (etag: String, bytes: ByteBuffer)] = [:]

    /// This thread's cache for `book` at `generation`: emptied when the book differs (or it grew
    /// past `capacity`); its snapshots and derived forms when `generation` moved, its definitions
    /// only when `definitions` moved (commits move the first, not the second).
    static func current(book: UInt64, generation: UInt64, definitions: UInt64) -> ReaderCache {
        let cache: ReaderCache
        if let raw = pthread_getspecific(Self.key) {
            cache = Unmanaged<ReaderCache>.fromOpaque(raw).takeUnretainedValue()
        } else {
            cache = ReaderCache()
            pthread_setspecific(Self.key, Unmanaged.passRetained(cache).toOpaque())
        }
        if cache.book != book || cache.definitions != definitions
            || cache.polls.count + cache.snapshots.count + cache.derived.count > Self.capacity
        {
            cache.book = book
            cache.definitions = definitions
            cache.polls.removeAll(keepingCapacity: true)
            cache.generation = 0
        }
        if cache.generation != generation {
            cache.generation = generation
            cache.snapshots.removeAll(keepingCapacity: true)
            cache.derived.removeAll(keepingCapacity: true)
        }
        return cache
    }

    /// The thread-specific slot; a thread's cache is released when the thread ends.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { raw in
            guard let raw else { return }
            Unmanaged<ReaderCache>.fromOpaque(raw).release()
        }
        precondition(created == 0, "pthread_key_create failed")
        return key
    }()
}
