import Foundation
import PollwireCore
import PollwireEngine
import Testing

@testable import PollwirePostgres

/// The NOTIFY payload every node writes and every node reads: written and read by hand, so it
/// must say exactly what JSONEncoder and JSONDecoder would, for any text a voter can type.
struct ChangeNoticeTests {
    static let awkward = [
        "", "plain", "quote \" inside", "back\\slash", "new\nline", "tab\t", "\u{01}control\u{1f}", "é and 漢字",
        "emoji 🗳️", "slash /", "{\"looks\": [\"like\", \"json\"]}", "\u{7f}del",
    ]

    static func change(_ random: inout SplitMix64) -> PollChange {
        func text() -> String {
            Self.awkward[Int(random.next() % UInt64(Self.awkward.count))]
                + Self.awkward[Int(random.next() % UInt64(Self.awkward.count))]
        }
        let deltas = (0..<Int(random.next() % 6)).map { _ in
            TallyDelta(
                key: TallyKey(question: text(), key: text()), amount: Int64(random.next() % 2001) - 1000)
        }
        let texts = (0..<Int(random.next() % 4)).map { _ in TextAnswer(question: text(), text: text()) }
        return PollChange(
            pollID: text(), shard: Int32(random.next() % 1000), sequence: Int64(random.next() % 1_000_000_000),
            deltas: deltas, texts: texts)
    }

    @Test func whatANodeWritesEveryNodeReadsBackWhole() throws {
        var random = SplitMix64(seed: 14)
        for _ in 0..<2000 {
            let change = Self.change(&random)
            let payload = ChangeNotice(change: change).payload()
            let notice = try #require(ChangeNotice.read(payload), "\(payload)")
            #expect(notice.change == change, "\(payload)")
            // JSONDecoder reads the same payload to the same notice.
            let decoded = try JSONDecoder().decode(ChangeNotice.self, from: Data(payload.utf8))
            #expect(decoded == notice, "\(payload)")
            // Without Foundation, unless a text has a control character (written as `\u00XX`).
            let control = payload.unicodeScalars.contains { $0.value < 0x20 } || payload.contains("\\u00")
            #expect(control || ChangeNotice.fast(payload) == notice, "\(payload)")
        }
    }

    @Test func payloadsJSONEncoderWroteAreReadToo() throws {
        var random = SplitMix64(seed: 15)
        for _ in 0..<500 {
            let notice = ChangeNotice(change: Self.change(&random))
            let encoded = String(decoding: try JSONEncoder().encode(notice), as: UTF8.self)
            #expect(ChangeNotice.read(encoded) == notice, "\(encoded)")
        }
        for notice in [
            ChangeNotice(definitionOf: "p1"), ChangeNotice(resync: "p1", shard: 2, sequence: 9),
            ChangeNotice(resync: "p1", shard: nil, sequence: nil),
        ] {
            #expect(ChangeNotice.read(notice.payload()) == notice)
            let encoded = String(decoding: try JSONEncoder().encode(notice), as: UTF8.self)
            #expect(ChangeNotice.read(encoded) == notice)
        }
    }

    @Test func aChangeTooLargeToCarryIsSentAsAResync() throws {
        let big = String(repeating: "x", count: 9000)
        let change = PollChange(
            pollID: "p1", shard: 3, sequence: 7, deltas: [], texts: [TextAnswer(question: "t", text: big)])
        let payload = ChangeNotice(change: change).payload()
        #expect(payload.utf8.count <= ChangeNotice.maxPayloadBytes)
        let notice = try #require(ChangeNotice.read(payload))
        #expect(notice == ChangeNotice(resync: "p1", shard: 3, sequence: 7))
        #expect(notice.change == nil)
    }

    /// Unknown or repeated keys are left to JSONDecoder, which makes of them what it does.
    @Test func whatIsNotANoticeIsNotRead() {
        for payload in [
            "", "{}", "[]", "null", #"{"p": 1}"#, #"{"p": "a""#, #"{"p": "a", "n": [1.5]}"#,
            #"{"p": "a", "s": 99999999999}"#, #"{"p": "a", "q": ["x"], "k": "y"}"#,
        ] {
            #expect(ChangeNotice.read(payload) == nil, "\(payload)")
        }
    }
}
