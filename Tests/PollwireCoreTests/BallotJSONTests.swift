import Foundation
import PollwireCore
import Testing

/// `BallotJSON` against `JSONDecoder`: on every body it reads, the same value; on the rest it
/// gives up (and the API answers with `JSONDecoder`'s error). Never a crash, never a different
/// value. `PWTEST_FUZZ_BODIES` sets how many mutated bodies a run tries (scripts/test: a million).
@Suite struct BallotJSONTests {
    static let count = Int(ProcessInfo.processInfo.environment["PWTEST_FUZZ_BODIES"] ?? "") ?? 20_000

    func foundationVote(_ bytes: [UInt8]) -> VoteBody? {
        try? PollwireJSON.shared.decode(VoteBody.self, from: Data(bytes))
    }

    func foundationBatch(_ bytes: [UInt8]) -> BatchBody? {
        try? PollwireJSON.shared.decode(BatchBody.self, from: Data(bytes))
    }

    func fastVote(_ bytes: [UInt8]) -> VoteBody? { bytes.withUnsafeBytes { BallotJSON.vote($0) } }
    func fastBatch(_ bytes: [UInt8]) -> BatchBody? { bytes.withUnsafeBytes { BallotJSON.batch($0) } }

    @Test func readsWhatClientsSend() throws {
        let vote = try #require(self.fastVote(Array(#"{"voter":"u-17","answers":{"q1":["b"]}}"#.utf8)))
        #expect(vote == VoteBody(voter: "u-17", answers: ["q1": .options(["b"])]))
        let spaced = Array(
            " {\n \"answers\" : { \"r\" : -3 , \"t\":\"a \\\"b\\\" \\\\ \\/ é\\n\" , \"m\": [ ] } ,\"device\":null}\t"
                .utf8)
        #expect(
            self.fastVote(spaced)
                == VoteBody(answers: ["r": .number(-3), "t": .text("a \"b\" \\ / é\n"), "m": .options([])]))
        let batch = try #require(
            self.fastBatch(
                Array(
                    #"{"ballots":[{"poll":"p","answers":{"q":1}},{"poll":"p2","voter":"v","idempotencyKey":"k","answers":{}}]}"#
                        .utf8)))
        #expect(
            batch
                == BatchBody(ballots: [
                    .init(poll: "p", answers: ["q": .number(1)]),
                    .init(poll: "p2", voter: "v", idempotencyKey: "k", answers: [:]),
                ]))
        let timed = try #require(
            self.fastBatch(Array(#"{"ballots":[{"poll":"p","castAt":"2026-12-07T10:00:00.250Z","answers":{}}]}"#.utf8)))
        #expect(timed.ballots.first?.castAt == Date(timeIntervalSince1970: 1_796_637_600.25))
        // A castAt that is not a date is left to JSONDecoder, which names the path.
        #expect(self.fastBatch(Array(#"{"ballots":[{"poll":"p","castAt":"soon","answers":{}}]}"#.utf8)) == nil)
    }

    /// What it leaves to `JSONDecoder`, valid JSON or not.
    @Test func givesUpOnWhatItDoesNotRead() {
        for text in [
            #"{"answers":{"q":"\u00e9"}}"#, #"{"answers":{"q":1.0}}"#, #"{"answers":{"q":1e2}}"#,
            #"{"answers":{"q":01}}"#, #"{"answers":{},"extra":1}"#, #"{"answers":{},"answers":{}}"#,
            #"{"answers":{"q":1,"q":2}}"#, #"{"answers":{"q":99999999999999999999}}"#, #"{"voter":"v"}"#,
            #"{"answers":null}"#, #"{"answers":{}} x"#, #"[1]"#, #"{"answers":{"q":[1]}}"#,
            "{\"answers\":{\"q\":\"\u{1}\"}}",
            #"{"answers":{"q":true}}"#, #"{"answers":{},}"#,
        ] {
            #expect(self.fastVote(Array(text.utf8)) == nil, "\(text)")
        }
        #expect(self.fastVote([UInt8](#"{"answers":{"q":""#.utf8) + [0xFF, 0x22, 0x7D, 0x7D]) == nil)
    }

    /// Random valid bodies: random key order and whitespace, escapes, non-ASCII, nulls, extreme
    /// integers. Every one is read, and read as `JSONDecoder` reads it.
    @Test func agreesWithJSONDecoderOnValidBodies() throws {
        var random = SplitMix64(seed: 0xB0D1)
        for index in 0..<2000 {
            let vote = BodyGenerator.vote(&random)
            let voteRead = try #require(self.fastVote(vote), "case \(index): \(String(decoding: vote, as: UTF8.self))")
            #expect(voteRead == self.foundationVote(vote), "case \(index)")
            let batch = BodyGenerator.batch(&random)
            let batchRead = try #require(self.fastBatch(batch), "case \(index)")
            #expect(batchRead == self.foundationBatch(batch), "case \(index)")
        }
    }

    /// Mutated bodies (bytes flipped, dropped, repeated, spliced): wherever this decoder reads
    /// one, `JSONDecoder` reads the same value; no crash.
    @Test func agreesWithJSONDecoderOnMutatedBodies() throws {
        var random = SplitMix64(seed: 0xF022)
        var read = 0
        for index in 0..<Self.count {
            let isBatch = index % 4 == 3
            var body = isBatch ? BodyGenerator.batch(&random) : BodyGenerator.vote(&random)
            for _ in 0..<Int.random(in: 1...3, using: &random) { BodyGenerator.mutate(&body, &random) }
            if isBatch {
                guard let fast = self.fastBatch(body) else { continue }
                read += 1
                let foundation = self.foundationBatch(body)
                #expect(fast == foundation, "case \(index): \(body)")
                if fast != foundation { return }
            } else {
                guard let fast = self.fastVote(body) else { continue }
                read += 1
                let foundation = self.foundationVote(body)
                #expect(fast == foundation, "case \(index): \(body)")
                if fast != foundation { return }
            }
        }
        // The mutations leave a fair share readable, so the comparison above is not empty.
        #expect(read > Self.count / 20)
    }
}

/// Bodies as clients might write them, and mutations of them.
enum BodyGenerator {
    static let pieces: [String] = [
        "a", "Z", "0", "_", "-", " ", "é", "😀", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\b", "\\f", "\\r", "/",
    ]

    static func space(_ random: inout SplitMix64) -> String {
        ["", "", "", " ", "\n", "\t ", "\r\n"].randomElement(using: &random)!
    }

    static func string(_ random: inout SplitMix64) -> String {
        "\"" + (0..<Int.random(in: 0...6, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
            + "\""
    }

    static func integer(_ random: inout SplitMix64) -> String {
        switch Int.random(in: 0..<5, using: &random) {
        case 0: return String(Int.min)
        case 1: return String(Int.max)
        case 2: return "-0"
        default: return String(Int.random(in: -20...20, using: &random))
        }
    }

    static func answer(_ random: inout SplitMix64) -> String {
        switch Int.random(in: 0..<3, using: &random) {
        case 0:
            return "["
                + (0..<Int.random(in: 0...3, using: &random)).map { _ in space(&random) + string(&random) }
                .joined(separator: ",") + space(&random) + "]"
        case 1: return integer(&random)
        default: return string(&random)
        }
    }

    static func answers(_ random: inout SplitMix64) -> String {
        var keys = Set<String>()
        let fields = (0..<Int.random(in: 0...4, using: &random)).compactMap { _ -> String? in
            let key = "\"q\(Int.random(in: 0...9, using: &random))\""
            guard keys.insert(key).inserted else { return nil }
            return space(&random) + key + space(&random) + ":" + space(&random) + answer(&random)
        }
        return "{" + fields.joined(separator: ",") + space(&random) + "}"
    }

    static func object(_ fields: [(String, String?)], _ random: inout SplitMix64) -> String {
        let present = fields.compactMap { key, value in value.map { "\"\(key)\"" + space(&random) + ":" + $0 } }
            .shuffled(using: &random)
        return space(&random) + "{" + present.map { space(&random) + $0 }.joined(separator: ",") + space(&random)
            + "}" + space(&random)
    }

    static func optional(_ random: inout SplitMix64) -> String? {
        switch Int.random(in: 0..<3, using: &random) {
        case 0: return nil
        case 1: return "null"
        default: return string(&random)
        }
    }

    static func vote(_ random: inout SplitMix64) -> [UInt8] {
        Array(
            object(
                [("voter", optional(&random)), ("device", optional(&random)), ("answers", answers(&random))],
                &random
            ).utf8)
    }

    static func ballot(_ random: inout SplitMix64) -> String {
        object(
            [
                ("poll", string(&random)), ("voter", optional(&random)), ("device", optional(&random)),
                ("idempotencyKey", optional(&random)), ("answers", answers(&random)),
                ("castAt", castAt(&random)),
            ], &random)
    }

    /// A `castAt`: absent, null, or a time with or without fractional seconds.
    static func castAt(_ random: inout SplitMix64) -> String? {
        let seconds = Double(Int64.random(in: 0...4_102_444_800, using: &random))
        let millis = Double(Int.random(in: 0...999, using: &random)) / 1000
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return nil
        case 1: return "null"
        case 2: return "\"" + Date(timeIntervalSince1970: seconds).formatted(.iso8601) + "\""
        default:
            return "\""
                + Date(timeIntervalSince1970: seconds + millis).formatted(
                    Date.ISO8601FormatStyle(includingFractionalSeconds: true)) + "\""
        }
    }

    static func batch(_ random: inout SplitMix64) -> [UInt8] {
        let ballots = (0..<Int.random(in: 0...3, using: &random)).map { _ in ballot(&random) }
        return Array(object([("ballots", "[" + ballots.joined(separator: ",") + "]")], &random).utf8)
    }

    static let interesting: [UInt8] = Array("{}[]\":,\\-0123456789.eEnul \t\n".utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xFF]

    static func mutate(_ body: inout [UInt8], _ random: inout SplitMix64) {
        guard !body.isEmpty else {
            body.append(interesting.randomElement(using: &random)!)
            return
        }
        let at = Int.random(in: 0..<body.count, using: &random)
        switch Int.random(in: 0..<6, using: &random) {
        case 0: body[at] = interesting.randomElement(using: &random)!
        case 1: body[at] = UInt8.random(in: 0...255, using: &random)
        case 2: body.remove(at: at)
        case 3: body.insert(interesting.randomElement(using: &random)!, at: at)
        case 4:
            let end = min(body.count, at + Int.random(in: 1...8, using: &random))
            body.insert(contentsOf: body[at..<end], at: at)
        default:
            let end = min(body.count, at + Int.random(in: 1...8, using: &random))
            body.removeSubrange(at..<end)
        }
    }
}
