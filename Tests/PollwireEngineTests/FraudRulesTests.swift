import Foundation
import PollwireCore
import Testing

@testable import PollwireEngine

/// `FraudDetector`: each rule flags the shape it is for and not voters arriving at random, and
/// `FraudRules(json:)` takes rules as data and refuses what it does not know, naming the field.
struct FraudRulesTests {
    static let start: Int64 = 1_800_000_000_000_000

    /// Organic background: `count` ballots at `rate`/s (Poisson), each from its own prefix, with
    /// fingerprints 1...10 and tokens minted where they vote.
    static func organic(_ count: Int, rate: Double, from: Double = 0, seed: UInt64 = 7) -> [BallotSignal] {
        var random = SplitMix64(seed: seed)
        var time = from
        return (0..<count).map { index in
            time += -log(1 - Double.random(in: 0..<1, using: &random)) / rate
            let micros = Self.start + Int64(time * 1e6)
            let prefix = "10.\(index / 250 % 250).\(index % 250).0/24"
            return BallotSignal(
                micros: micros, prefix: prefix, fingerprint: UInt64.random(in: 1...10, using: &random),
                device: .init(prefix: prefix, micros: micros - 5_000_000))
        }
    }

    /// The rules' verdicts on `signals` merged in time order with `background`: the flags of
    /// `signals` only.
    static func flags(
        _ signals: [BallotSignal], among background: [BallotSignal], rules: FraudRules = .defaults
    )
        -> [FraudFlag?]
    {
        var detector = FraudDetector(rules: rules)
        let merged = (signals.enumerated().map { ($0.element, $0.offset) } + background.map { ($0, -1) })
            .sorted { $0.0.micros < $1.0.micros }
        var flags = [FraudFlag?](repeating: nil, count: signals.count)
        for (signal, index) in merged {
            let flag = detector.evaluate(signal)
            if index >= 0 { flags[index] = flag }
        }
        return flags
    }

    @Test func votersArrivingAtRandomAreNotFlagged() {
        var detector = FraudDetector(rules: .defaults)
        let flagged = Self.organic(20_000, rate: 40).compactMap { detector.evaluate($0) }
        #expect(flagged.isEmpty, "\(flagged.prefix(3))")
    }

    @Test func aBurstFromOnePrefixIsFlaggedOnceItPassesTheBar() {
        let background = Self.organic(4000, rate: 20)
        // 10 a second (gaps at random, so that the metronome has nothing to say) against 20 a
        // second from everyone else.
        var random = SplitMix64(seed: 11)
        var time = 120.0
        let burst = (0..<60).map { index in
            time += -log(1 - Double.random(in: 0..<1, using: &random)) / 10
            return BallotSignal(
                micros: Self.start + Int64(time * 1e6), prefix: "203.0.113.0/24", fingerprint: UInt64(index % 10 + 1))
        }
        let flags = Self.flags(burst, among: background)
        // Not before it has cast minBallots (15) and a tenth of the window (5 x the 2% floor),
        // then every ballot while the burst lasts.
        #expect(flags.prefix(14).allSatisfy { $0 == nil })
        #expect(flags.dropFirst(30).allSatisfy { $0?.rule == "prefixBurst" }, "\(flags.map { $0 == nil ? 0 : 1 })")
        #expect(flags[40]?.evidence.hasPrefix("203.0.113.0/24 cast ") == true, "\(String(describing: flags[40]))")
    }

    @Test func tokensMintedInOnePlaceAndVotingFromOthersAreFlagged() {
        let background = Self.organic(4000, rate: 20)
        let farm = (0..<40).map { index in
            BallotSignal(
                micros: Self.start + 100_000_000 + Int64(index) * 2_000_000, prefix: "172.16.\(index).0/24",
                fingerprint: 3, device: .init(prefix: "198.51.100.0/24", micros: Self.start + Int64(index) * 1_000_000))
        }
        let flags = Self.flags(farm, among: background)
        #expect(flags.prefix(20).allSatisfy { $0 == nil })
        #expect(flags.dropFirst(20).allSatisfy { $0?.rule == "mintedDevices" })
        // The same tokens voting where they were minted are that prefix's business (a burst, if any).
        let home = farm.map { signal in
            var signal = signal
            signal.prefix = "198.51.100.0/24"
            signal.micros += 3_000_000_000
            return signal
        }
        #expect(Self.flags(home, among: background).allSatisfy { $0?.rule != "mintedDevices" })
    }

    @Test func oneFingerprintInBulkIsFlaggedOnceTheHistoryKnowsTheUsualShares() {
        let background = Self.organic(12_000, rate: 40)
        func bot(from second: Double) -> [BallotSignal] {
            (0..<100).map { index in
                BallotSignal(
                    micros: Self.start + Int64((second + Double(index) / 5) * 1e6), prefix: "172.17.\(index).0/24",
                    fingerprint: 999)
            }
        }
        // 5 of every 45 ballots for 20 s: far above the 1% floor once 500 ballots of history exist.
        let late = Self.flags(bot(from: 200), among: background)
        #expect(late.filter { $0?.rule == "fingerprintBurst" }.count >= 75, "\(late.compactMap { $0 }.count)")
        // In the first seconds of a poll there is no history to judge by.
        let early = Self.flags(bot(from: 0), among: background)
        #expect(early.prefix(40).allSatisfy { $0 == nil })
    }

    @Test func aMetronomeIsFlaggedAndRandomGapsAreNot() {
        let ticks = (0..<30).map { index in
            BallotSignal(
                micros: Self.start + Int64(index) * 3_000_000 + Int64(index % 3) * 20_000, prefix: "192.0.2.0/24",
                fingerprint: 1)
        }
        let flags = Self.flags(ticks, among: [])
        #expect(flags.prefix(9).allSatisfy { $0 == nil })
        #expect(
            flags.dropFirst(9).allSatisfy { $0?.rule == "metronome" },
            "\(flags.compactMap { $0 }.first?.evidence ?? "")")
        var random = SplitMix64(seed: 3)
        var time = 0.0
        let people = (0..<200).map { _ in
            time += -log(1 - Double.random(in: 0..<1, using: &random)) * 3
            return BallotSignal(micros: Self.start + Int64(time * 1e6), prefix: "192.0.2.0/24", fingerprint: 1)
        }
        #expect(Self.flags(people, among: []).allSatisfy { $0 == nil })
    }

    @Test func rulesAreDataAndWhatTheyDoNotKnowIsRefusedByName() throws {
        let rules = try FraudRules(
            json: ["prefixBurst": .object(["factor": .number(8)]), "metronome": .null], field: "fraud")
        #expect(rules.prefixBurst?.factor == 8 && rules.prefixBurst?.windowSeconds == 10)
        #expect(rules.metronome == nil && rules.mintedDevices == .init() && rules.fingerprintBurst == .fingerprint)
        let cases: [([String: JSONValue], String)] = [
            (["bogus": .object([:])], "fraud.bogus"),
            (["prefixBurst": .object(["factr": .number(8)])], "fraud.prefixBurst.factr"),
            (["prefixBurst": .object(["factor": .number(0.5)])], "fraud.prefixBurst.factor"),
            (["prefixBurst": .object(["minBallots": .number(1.5)])], "fraud.prefixBurst.minBallots"),
            (["mintedDevices": .string("on")], "fraud.mintedDevices"),
            (["fingerprintBurst": .object(["historySeconds": .number(5)])], "fraud.fingerprintBurst.historySeconds"),
            (["metronome": .object(["maxVariation": .bool(true)])], "fraud.metronome.maxVariation"),
        ]
        for (json, field) in cases {
            #expect(throws: ValidationError.self, "\(field)") { try FraudRules(json: json, field: "fraud") }
            do {
                _ = try FraudRules(json: json, field: "fraud")
            } catch {
                #expect(error.field == field)
            }
        }
    }
}
