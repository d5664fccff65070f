import Foundation
import GRDB
import PollwireCore
import PollwireEngine
import Testing

/// What the SQLite file holds, read after the server is gone.
struct StoredState {
    var poll: Poll
    /// Answers (canonical JSON) by voter key, and how many rows each voter has.
    var answers: [String: String]
    var rowsPerVoter: [String: Int]
    var tallies: Tally
    var recount: Tally
    /// Ballots per second of `created_at`, recounted from the ballot rows (the 1 s timeline
    /// the server must serve): second -> "question/key" -> count, the ballots as "/#" (the
    /// questions' response counters left out, as the timeline leaves them out).
    var secondsRecount: [Int64: [String: Int64]]
    /// Ballots stored with their own castAt, and those of them stored late.
    var castAts = 0
    var lateBallots = 0

    init(dataDir: URL, pollID: String) throws {
        let queue = try DatabaseQueue(path: dataDir.appendingPathComponent("pollwire.sqlite").path)
        defer { try? queue.close() }
        let (definition, rows, tallyRows) = try queue.read { db in
            (
                try String.fetchOne(db, sql: "SELECT definition FROM polls WHERE id = ?", arguments: [pollID])!,
                try Row.fetchAll(
                    db, sql: "SELECT voter, answers, created_at, cast_at, late FROM ballots WHERE poll_id = ?",
                    arguments: [pollID]),
                try Row.fetchAll(
                    db, sql: "SELECT question, key, count FROM tallies WHERE poll_id = ?", arguments: [pollID])
            )
        }
        self.poll = try PollwireJSON.decoder().decode(Poll.self, from: Data(definition.utf8))
        self.answers = [:]
        self.rowsPerVoter = [:]
        self.recount = Tally()
        self.secondsRecount = [:]
        for row in rows {
            let voter: String = row["voter"]
            let answers: String = row["answers"]
            self.answers[voter] = answers
            self.rowsPerVoter[voter, default: 0] += 1
            let decoded = try JSONDecoder().decode([String: Answer].self, from: Data(answers.utf8))
            let ballot = try self.poll.ballot(answers: decoded)
            self.recount.apply(ballot.deltas())
            // The store keeps whole microseconds; a ballot's second is theirs, floored: the one
            // of its castAt if it was sent with one in time, else the one it was stored in.
            let stored = Int64((row["created_at"] as Double * 1_000_000).rounded())
            let castAt = (row["cast_at"] as Double?).map { Int64(($0 * 1_000_000).rounded()) }
            let late: Bool = row["late"]
            if castAt != nil { self.castAts += 1 }
            if late {
                self.lateBallots += 1
                self.secondsRecount[stored / 1_000_000, default: [:]]["/late", default: 0] += 1
                continue
            }
            for key in ballot.keys where CastWindows.counts(key) {
                let second = (castAt ?? stored) / 1_000_000
                self.secondsRecount[second, default: [:]]["\(key.question)/\(key.key)", default: 0] += 1
            }
        }
        self.tallies = Tally()
        for row in tallyRows {
            self.tallies.apply([TallyDelta(key: TallyKey(question: row[0], key: row[1]), amount: row[2])])
        }
    }
}
