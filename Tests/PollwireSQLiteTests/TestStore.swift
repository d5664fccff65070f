import Foundation
import GRDB
import PollwireCore
import PollwireEngine
import PollwireSQLite

/// A real SQLite database in a fresh temporary directory.
struct TestStore {
    let directory: URL
    let database: SQLiteDatabase
    var polls: SQLitePollStore { SQLitePollStore(database: self.database) }
    var votes: SQLiteVoteStore { SQLiteVoteStore(database: self.database) }

    init(synchronous: SQLiteDatabase.Synchronous = .full) throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "pollwire-test-\(UUID().uuidString)")
        self.database = try SQLiteDatabase(
            path: self.directory.appendingPathComponent("pollwire.sqlite").path, synchronous: synchronous)
    }

    /// A fresh store holding one open poll, and a TallyBook loaded from it.
    static func withPoll() async throws -> (TestStore, Poll, TallyBook) {
        let store = try TestStore()
        let poll = lunchPoll()
        try await store.polls.insert(poll)
        let book = TallyBook()
        book.load(try await store.polls.loadPolls(latestTextLimit: 10))
        return (store, poll, book)
    }

    func remove() {
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Counters recounted from the stored ballots (each voter's latest revision), re-validated
    /// against the poll's definition: what the tallies must equal.
    func recount(_ poll: Poll) throws -> Tally {
        let rows = try self.database.pool.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT answers FROM ballots b WHERE poll_id = ? AND (voter IS NULL OR revision =
                        (SELECT MAX(revision) FROM ballots WHERE poll_id = b.poll_id AND voter = b.voter))
                    """, arguments: [poll.id])
        }
        var tally = Tally()
        for answers in rows {
            let decoded = try JSONDecoder().decode([String: Answer].self, from: Data(answers.utf8))
            tally.apply(try poll.ballot(answers: decoded).deltas())
        }
        return tally
    }

    /// The tallies table of a poll, zero rows left out.
    func storedTally(_ pollID: String) throws -> Tally {
        try self.database.pool.read { db in
            var tally = Tally()
            for row in try Row.fetchAll(
                db, sql: "SELECT question, key, count FROM tallies WHERE poll_id = ?", arguments: [pollID])
            {
                tally.apply([TallyDelta(key: TallyKey(question: row[0], key: row[1]), amount: row[2])])
            }
            return tally
        }
    }
}

func lunchPoll(id: String = Identifier.random(), settings: PollSettings = PollSettings()) -> Poll {
    Poll(
        id: id, title: "Lunch?",
        questions: [
            Question(
                id: "q1", kind: .single, prompt: "Where?",
                options: [.init(id: "a", label: "Pizza"), .init(id: "b", label: "Sushi")]),
            Question(id: "note", kind: .text, prompt: "Why?", required: false),
        ],
        settings: settings, createdAt: Date(), updatedAt: Date())
}

func vote(
    _ poll: Poll, voter: String?, _ option: String, note: String? = nil, key: String? = nil
) throws -> VoteCommand {
    var answers: [String: Answer] = ["q1": .options([option])]
    if let note { answers["note"] = .text(note) }
    return VoteCommand(
        pollID: poll.id, voter: voter, idempotencyKey: key, ballot: try poll.ballot(answers: answers),
        allowChange: poll.settings.allowChange)
}
