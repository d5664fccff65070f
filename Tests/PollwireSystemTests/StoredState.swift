import Foundation
import GRDB
import PollwireCore
import Testing

/// What the SQLite file holds, read after the server is gone.
struct StoredState {
    var poll: Poll
    /// Answers (canonical JSON) by voter key, and how many rows each voter has.
    var answers: [String: String]
    var rowsPerVoter: [String: Int]
    var tallies: Tally
    var recount: Tally

    init(dataDir: URL, pollID: String) throws {
        let queue = try DatabaseQueue(path: dataDir.appendingPathComponent("pollwire.sqlite").path)
        defer { try? queue.close() }
        let (definition, rows, tallyRows) = try queue.read { db in
            (
                try String.fetchOne(db, sql: "SELECT definition FROM polls WHERE id = ?", arguments: [pollID])!,
                try Row.fetchAll(db, sql: "SELECT voter, answers FROM ballots WHERE poll_id = ?", arguments: [pollID]),
                try Row.fetchAll(
                    db, sql: "SELECT question, key, count FROM tallies WHERE poll_id = ?", arguments: [pollID])
            )
        }
        self.poll = try PollwireJSON.decoder().decode(Poll.self, from: Data(definition.utf8))
        self.answers = [:]
        self.rowsPerVoter = [:]
        self.recount = Tally()
        for row in rows {
            let voter: String = row["voter"]
            let answers: String = row["answers"]
            self.answers[voter] = answers
            self.rowsPerVoter[voter, default: 0] += 1
            let decoded = try JSONDecoder().decode([String: Answer].self, from: Data(answers.utf8))
            self.recount.apply(try self.poll.ballot(answers: decoded).deltas())
        }
        self.tallies = Tally()
        for row in tallyRows {
            self.tallies.apply([TallyDelta(key: TallyKey(question: row[0], key: row[1]), amount: row[2])])
        }
    }
}
