import Foundation
import PollwireCore
import PollwireEngine

/// What one `pg_notify('pollwire', ...)` says, as compact JSON: a commit's change to one poll
/// (the committing node's shard and sequence, counter deltas and text answers), or that a poll's
/// definition changed.
///
/// A NOTIFY payload must stay under 8000 bytes; a change that does not fit is sent without its
/// deltas (`r`), and the nodes that hear it read the poll's counters from the store instead.
struct ChangeNotice: Codable, Equatable {
    /// The poll.
    var p: String
    /// The shard that committed (the node's number; absent: 0).
    var s: Int32?
    /// The shard's sequence for the poll after the commit.
    var v: Int64?
    /// Deltas as three parallel arrays: question, key, amount.
    var q: [String]?
    var k: [String]?
    var n: [Int64]?
    /// Text answers, oldest first, as question, text, question, text, ...
    var t: [String]?
    /// True when the change was too large to carry: resync the poll from the store.
    var r: Bool?
    /// True when the poll was created, edited or deleted: reload its definition.
    var d: Bool?

    static let channel = "pollwire"
    static let maxPayloadBytes = 7900

    init(change: PollChange) {
        self.p = change.pollID
        self.s = change.shard
        self.v = change.sequence
        self.q = change.deltas.map(\.key.question)
        self.k = change.deltas.map(\.key.key)
        self.n = change.deltas.map(\.amount)
        self.t = change.texts.isEmpty ? nil : change.texts.flatMap { [$0.question, $0.text] }
    }

    init(definitionOf pollID: String) {
        self.p = pollID
        self.d = true
    }

    /// A change too large to carry: only the poll, shard and sequence, to be read from the store.
    init(resync pollID: String, shard: Int32?, sequence: Int64?) {
        self.p = pollID
        self.s = shard
        self.v = sequence
        self.r = true
    }

    /// The JSON payload, or the resync form when the whole change does not fit.
    func payload() -> String {
        let encoder = JSONEncoder()
        if let data = try? encoder.encode(self), data.count <= Self.maxPayloadBytes {
            return String(decoding: data, as: UTF8.self)
        }
        let short = ChangeNotice(resync: self.p, shard: self.s, sequence: self.v)
        return String(decoding: (try? encoder.encode(short)) ?? Data(), as: UTF8.self)
    }

    /// The change it carries, when it carries one whole.
    var change: PollChange? {
        guard let sequence = self.v, self.r != true, self.d != true else { return nil }
        let questions = self.q ?? []
        let keys = self.k ?? []
        let amounts = self.n ?? []
        guard questions.count == keys.count, keys.count == amounts.count else { return nil }
        let deltas = questions.indices.map {
            TallyDelta(key: TallyKey(question: questions[$0], key: keys[$0]), amount: amounts[$0])
        }
        let flat = self.t ?? []
        let texts = stride(from: 0, to: flat.count - 1, by: 2).map {
            TextAnswer(question: flat[$0], text: flat[$0 + 1])
        }
        return PollChange(pollID: self.p, shard: self.s ?? 0, sequence: sequence, deltas: deltas, texts: texts)
    }
}
