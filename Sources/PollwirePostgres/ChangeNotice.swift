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
    /// The shard's ballot chain after the commit: its head (64 hex digits) and length.
    var c: String?
    var l: Int64?
    /// True when the change was too large to carry: resync the poll from the store.
    var r: Bool?
    /// True when the poll was created, edited or deleted: reload its definition.
    var d: Bool?

    static let channel = "pollwire"
    static let maxPayloadBytes = 7900

    init(
        p: String, s: Int32? = nil, v: Int64? = nil, q: [String]? = nil, k: [String]? = nil, n: [Int64]? = nil,
        t: [String]? = nil, r: Bool? = nil, d: Bool? = nil, c: String? = nil, l: Int64? = nil
    ) {
        (self.p, self.s, self.v, self.q, self.k, self.n, self.t, self.r, self.d) = (p, s, v, q, k, n, t, r, d)
        (self.c, self.l) = (c, l)
    }

    init(change: PollChange) {
        self.p = change.pollID
        self.s = change.shard
        self.v = change.sequence
        self.q = change.deltas.map(\.key.question)
        self.k = change.deltas.map(\.key.key)
        self.n = change.deltas.map(\.amount)
        self.t = change.texts.isEmpty ? nil : change.texts.flatMap { [$0.question, $0.text] }
        self.c = change.chain?.head.hex
        self.l = change.chain?.length
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

    /// The JSON payload, or the resync form when the whole change does not fit. Written by hand:
    /// every node reads every node's payloads, and JSONEncoder and JSONDecoder were 6% of a
    /// node's CPU with three nodes on one hot poll.
    func payload() -> String {
        let text = self.json()
        if text.utf8.count <= Self.maxPayloadBytes { return text }
        return ChangeNotice(resync: self.p, shard: self.s, sequence: self.v).json()
    }

    /// The compact JSON of the notice: the fields present, in declaration order.
    func json() -> String {
        var out = "{\"p\":"
        JSONText.appendQuoted(self.p, to: &out)
        if let s { out += ",\"s\":\(s)" }
        if let v { out += ",\"v\":\(v)" }
        func strings(_ name: String, _ values: [String]?) {
            guard let values else { return }
            out += ",\"\(name)\":["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                JSONText.appendQuoted(value, to: &out)
            }
            out += "]"
        }
        strings("q", self.q)
        strings("k", self.k)
        if let n { out += ",\"n\":[" + n.map(String.init).joined(separator: ",") + "]" }
        strings("t", self.t)
        if let c {
            out += ",\"c\":"
            JSONText.appendQuoted(c, to: &out)
        }
        if let l { out += ",\"l\":\(l)" }
        if let r { out += ",\"r\":\(r)" }
        if let d { out += ",\"d\":\(d)" }
        return out + "}"
    }

    /// The notice a payload says: read without Foundation when it is as `json()` writes it (what
    /// every node sends), else with JSONDecoder; nil when it is not a notice.
    static func read(_ payload: String) -> ChangeNotice? {
        if let notice = Self.fast(payload) { return notice }
        return try? JSONDecoder().decode(ChangeNotice.self, from: Data(payload.utf8))
    }

    /// The notice when the payload is as `json()` writes it; nil at anything else.
    static func fast(_ payload: String) -> ChangeNotice? {
        var payload = payload
        return payload.withUTF8 { Self.fast(UnsafeRawBufferPointer($0)) }
    }

    private static func fast(_ bytes: UnsafeRawBufferPointer) -> ChangeNotice? {
        typealias Reader = BallotJSON.Reader
        var reader = Reader(bytes: bytes)
        var poll: String?
        var shard: Int32?
        var sequence: Int64?
        var questions: [String]?
        var keys: [String]?
        var amounts: [Int64]?
        var texts: [String]?
        var resync: Bool?
        var definition: Bool?
        var chainHead: String?
        var chainLength: Int64?
        let read = Reader.object(&reader) { key, reader in
            switch key {
            case "p": return Reader.once(&poll, reader.string())
            case "s": return Reader.once(&shard, reader.integer().flatMap { Int32(exactly: $0) })
            case "v": return Reader.once(&sequence, reader.integer().map { Int64($0) })
            case "q": return Reader.once(&questions, reader.array { $0.string() })
            case "k": return Reader.once(&keys, reader.array { $0.string() })
            case "n": return Reader.once(&amounts, reader.array { $0.integer().map { Int64($0) } })
            case "t": return Reader.once(&texts, reader.array { $0.string() })
            case "r": return Reader.once(&resync, reader.bool())
            case "d": return Reader.once(&definition, reader.bool())
            case "c": return Reader.once(&chainHead, reader.string())
            case "l": return Reader.once(&chainLength, reader.integer().map { Int64($0) })
            default: return false
            }
        }
        guard read, reader.atEnd(), let poll else { return nil }
        return ChangeNotice(
            p: poll, s: shard, v: sequence, q: questions, k: keys, n: amounts, t: texts, r: resync, d: definition,
            c: chainHead, l: chainLength)
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
        var chain: ChainLink?
        if let c, let l, let head = ChainHash(hex: c) { chain = ChainLink(length: l, head: head) }
        return PollChange(
            pollID: self.p, shard: self.s ?? 0, sequence: sequence, deltas: deltas, texts: texts, chain: chain)
    }
}
