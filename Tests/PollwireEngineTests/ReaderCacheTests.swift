import Foundation
import NIOCore
import PollwireCore
import PollwireEngine
import Testing

/// Readers keep what they read per thread (`ReaderCache`) and take no lock while nothing changes;
/// every change a reader may see must reach them at their next read.
@Suite struct ReaderCacheTests {
    func poll(_ id: String, title: String = "T") -> Poll {
        Poll(
            id: id, title: title,
            questions: [
                Question(
                    id: "q1", kind: .single, prompt: "?",
                    options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
            ],
            settings: PollSettings(dedupe: .none), createdAt: Date(), updatedAt: Date())
    }

    func vote(_ book: TallyBook, _ id: String, version: Int64) {
        book.apply([
            PollChange(
                pollID: id, sequence: version, deltas: [TallyDelta(key: TallyKey(question: "q1", key: "a"), amount: 1)],
                texts: [])
        ])
    }

    @Test func aReaderSeesEveryChangeAtItsNextRead() throws {
        let book = TallyBook()
        book.load([StoredPoll(poll: self.poll("p"), version: 0, tally: Tally(), latestText: [:])])
        #expect(book.snapshot(of: "p", hidden: false)?.version == 0)
        #expect(book.snapshot(of: "p", hidden: false)?.version == 0)  // from this thread's cache
        // A commit.
        self.vote(book, "p", version: 1)
        let snapshot = try #require(book.snapshot(of: "p", hidden: false))
        #expect(snapshot.version == 1)
        #expect(String(buffer: snapshot.body).contains("{\"count\":1,\"id\":\"a\"}"))
        // A derived form made once per snapshot, then again for the next version.
        var made = 0
        for _ in 0..<3 {
            _ = book.derived(snapshot, form: "x") {
                made += 1
                return ByteBuffer(string: "v1")
            }
        }
        #expect(made == 1)
        self.vote(book, "p", version: 2)
        let next = try #require(book.snapshot(of: "p", hidden: false))
        #expect(next.version == 2)
        #expect(String(buffer: book.derived(next, form: "x") { ByteBuffer(string: "v2") }) == "v2")
        // A definition edit, a new poll, a removal.
        #expect(book.poll("p")?.title == "T")
        book.put(self.poll("p", title: "Edited"))
        #expect(book.poll("p")?.title == "Edited")
        #expect(book.poll("new") == nil)
        book.put(self.poll("new"))
        #expect(book.poll("new") != nil)
        book.remove("new")
        #expect(book.poll("new") == nil)
        #expect(book.snapshot(of: "new", hidden: false) == nil)
        // Staleness.
        book.setStale(true)
        #expect(book.snapshot(of: "p", hidden: false)?.stale == true)
        book.setStale(false)
        #expect(book.snapshot(of: "p", hidden: false)?.stale == false)
    }

    /// Two books read on one thread (tests, a restart in process) never see each other's polls.
    @Test func twoBooksOnOneThreadKeepApart() {
        let first = TallyBook()
        let second = TallyBook()
        first.load([StoredPoll(poll: self.poll("p", title: "first"), version: 3, tally: Tally(), latestText: [:])])
        second.load([StoredPoll(poll: self.poll("p", title: "second"), version: 7, tally: Tally(), latestText: [:])])
        for _ in 0..<2 {
            #expect(first.poll("p")?.title == "first")
            #expect(second.poll("p")?.title == "second")
            #expect(first.snapshot(of: "p", hidden: false)?.version == 3)
            #expect(second.snapshot(of: "p", hidden: false)?.version == 7)
        }
    }

    /// Readers on other threads while a writer commits: each reader's versions never go back,
    /// and once the writer is done every reader sees the last version.
    @Test func readersOnManyThreadsFollowTheWriter() async {
        let book = TallyBook()
        book.load([StoredPoll(poll: self.poll("p"), version: 0, tally: Tally(), latestText: [:])])
        let last: Int64 = 2000
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var seen: Int64 = 0
                    for _ in 0..<20_000 {
                        guard let version = book.snapshot(of: "p", hidden: false)?.version, version >= seen else {
                            return false
                        }
                        seen = version
                        if seen == last { break }
                    }
                    return true
                }
            }
            group.addTask {
                for version in 1...last { self.vote(book, "p", version: version) }
                return true
            }
            for await monotonic in group { #expect(monotonic) }
        }
        #expect(book.snapshot(of: "p", hidden: false)?.version == last)
        let fromAnotherThread = await Task.detached { book.snapshot(of: "p", hidden: false)?.version }.value
        #expect(fromAnotherThread == last)
    }
}
