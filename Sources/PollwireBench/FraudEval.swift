import ArgumentParser
import Foundation
import PollwireCore
import PollwireEngine

/// `pollwire-bench fraud-eval`: the fraud rules (`FraudDetector`, the code the server runs)
/// against a seeded workload of organic voters and attacks of known shapes, ballot by ballot in
/// arrival order: recall per attack, precision and the false-positive rate on organic traffic,
/// which rule caught what, and the rules' cost per ballot. The same seed gives the same ballots.
struct FraudEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fraud-eval",
        abstract: "Precision and recall of the fraud rules on a seeded workload of organic voters and attacks.")

    @Option(help: "Seed of the workload.") var seed: UInt64 = 1
    @Option(help: "Minutes of organic voting.") var minutes = 30.0
    @Option(help: "Organic ballots per second (Poisson arrivals).") var rate = 40.0
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    /// What made a ballot.
    enum Source: String, CaseIterable {
        case organic
        case burst = "one-prefix burst"
        case rotatingTokens = "rotating device tokens"
        case fingerprint = "one fingerprint"
        case metronome = "metronome cadence"
        case slow = "slow stuffing"
    }

    struct Ballot {
        var signal: BallotSignal
        var source: Source
    }

    /// The workload: organic voters from many prefixes (residential ones and carrier NATs that
    /// carry many voters each), fingerprints from a Zipf spread of common browsers, device
    /// tokens minted where the voter is (some reused in a household, some voters roaming to
    /// another network before voting), and each attack in its own stretch of the run.
    static func workload(seed: UInt64, seconds: Double, rate: Double) -> [Ballot] {
        var random = SplitMix64(seed: seed)
        let start: Int64 = 1_800_000_000_000_000
        func micros(_ seconds: Double) -> Int64 { start + Int64(seconds * 1e6) }
        func exponential(_ mean: Double) -> Double { -mean * log(1 - Double.random(in: 0..<1, using: &random)) }
        // 5,000 residential prefixes (weight 1) and 30 carrier NATs (weight 40 each: 19% of voters).
        let residential = (0..<5000).map { "10.\($0 / 250).\($0 % 250).0/24" }
        let carriers = (0..<30).map { "100.64.\($0).0/24" }
        let weightTotal = Double(residential.count + 40 * carriers.count)
        func organicPrefix() -> String {
            let pick = Double.random(in: 0..<weightTotal, using: &random)
            return pick < Double(residential.count) ? residential[Int(pick)] : carriers[Int((pick - 5000) / 40)]
        }
        // 60 fingerprints, Zipf (s = 1.1): the most common browser a fifth of voters.
        let zipf = (1...60).map { 1 / pow(Double($0), 1.1) }
        let zipfTotal = zipf.reduce(0, +)
        func organicFingerprint() -> UInt64 {
            var pick = Double.random(in: 0..<zipfTotal, using: &random)
            for (index, weight) in zipf.enumerated() {
                pick -= weight
                if pick < 0 { return UInt64(index + 1) }
            }
            return 60
        }
        var ballots: [Ballot] = []
        var lastToken: [String: Int64] = [:]
        var time = 0.0
        while true {
            time += exponential(1 / rate)
            guard time < seconds else { break }
            let prefix = organicPrefix()
            let at = micros(time)
            // 10% reuse a token minted in the household (the prefix's last one); 5% got theirs
            // on another network (roaming) a few minutes before.
            var mint = BallotSignal.DeviceMint(prefix: prefix, micros: at - Int64(exponential(60) * 1e6))
            let roll = Double.random(in: 0..<1, using: &random)
            if roll < 0.10, let last = lastToken[prefix] {
                mint.micros = last
            } else if roll < 0.15 {
                mint.prefix = organicPrefix()
            }
            lastToken[prefix] = mint.micros
            ballots.append(
                Ballot(
                    signal: BallotSignal(micros: at, prefix: prefix, fingerprint: organicFingerprint(), device: mint),
                    source: .organic))
        }
        var proxy = 0
        func proxyPrefix() -> String {
            proxy += 1
            return "172.\(16 + proxy / 62_500 % 16).\(proxy / 250 % 250).\(proxy % 250)/24"
        }
        // One prefix, 600 ballots at 15/s, tokens minted there just before.
        let burst = seconds * 0.1
        for index in 0..<600 {
            let at = micros(burst + Double(index) / 15)
            ballots.append(
                Ballot(
                    signal: BallotSignal(
                        micros: at, prefix: "203.0.113.0/24", fingerprint: organicFingerprint(),
                        device: .init(prefix: "203.0.113.0/24", micros: at - 2_000_000)),
                    source: .burst))
        }
        // 400 tokens minted from one prefix in 100 s, voting through proxies over 400 s.
        let farm = seconds * 0.25
        for index in 0..<400 {
            let minted = micros(farm + Double(index) / 4)
            let at = micros(farm + 100 + Double(index) + Double.random(in: 0..<1, using: &random))
            ballots.append(
                Ballot(
                    signal: BallotSignal(
                        micros: at, prefix: proxyPrefix(), fingerprint: organicFingerprint(),
                        device: .init(prefix: "198.51.100.0/24", micros: minted)),
                    source: .rotatingTokens))
        }
        // One rare fingerprint, 500 ballots over 100 s, each from another proxy.
        let bot = seconds * 0.5
        for index in 0..<500 {
            let at = micros(bot + Double(index) / 5 + Double.random(in: 0..<0.2, using: &random))
            let prefix = proxyPrefix()
            ballots.append(
                Ballot(
                    signal: BallotSignal(
                        micros: at, prefix: prefix, fingerprint: 999,
                        device: .init(prefix: prefix, micros: at - 1_000_000)),
                    source: .fingerprint))
        }
        // One prefix, a ballot every 3 s (±2%) for 1200 s: far below any burst.
        let metronome = seconds * 0.6
        for index in 0..<400 {
            let at = micros(metronome + Double(index) * 3 + Double.random(in: -0.06...0.06, using: &random))
            ballots.append(
                Ballot(
                    signal: BallotSignal(
                        micros: at, prefix: "192.0.2.0/24", fingerprint: organicFingerprint(),
                        device: .init(prefix: "192.0.2.0/24", micros: at - 1_000_000)),
                    source: .metronome))
        }
        // 200 ballots over the whole run, Poisson, each from another proxy, common browsers.
        var slow = 0.0
        for _ in 0..<200 {
            slow += exponential(seconds / 200)
            let at = micros(min(slow, seconds))
            let prefix = proxyPrefix()
            ballots.append(
                Ballot(
                    signal: BallotSignal(
                        micros: at, prefix: prefix, fingerprint: organicFingerprint(),
                        device: .init(prefix: prefix, micros: at - Int64(exponential(60) * 1e6))),
                    source: .slow))
        }
        ballots.sort { $0.signal.micros < $1.signal.micros }
        return ballots
    }

    func run() throws {
        let ballots = Self.workload(seed: self.seed, seconds: self.minutes * 60, rate: self.rate)
        var detector = FraudDetector(rules: .defaults)
        var total: [Source: Int] = [:]
        var flagged: [Source: Int] = [:]
        var byRule: [Source: [String: Int]] = [:]
        let clock = ContinuousClock()
        let started = clock.now
        for ballot in ballots {
            total[ballot.source, default: 0] += 1
            if let flag = detector.evaluate(ballot.signal) {
                flagged[ballot.source, default: 0] += 1
                byRule[ballot.source, default: [:]][flag.rule, default: 0] += 1
            }
        }
        let elapsed = clock.now - started
        let nanosPerBallot = Double(elapsed / .nanoseconds(1)) / Double(max(1, ballots.count))
        let attacks = Source.allCases.filter { $0 != .organic }
        let truePositives = attacks.reduce(0) { $0 + (flagged[$1] ?? 0) }
        let falsePositives = flagged[.organic] ?? 0
        let precision = Double(truePositives) / Double(max(1, truePositives + falsePositives))
        let falsePositiveRate = Double(falsePositives) / Double(max(1, total[.organic] ?? 0))
        func recall(_ source: Source) -> Double { Double(flagged[source] ?? 0) / Double(max(1, total[source] ?? 0)) }
        func rules(_ source: Source) -> String {
            (byRule[source] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        if self.json {
            var fields = [
                "\"seed\":\(self.seed)", "\"ballots\":\(ballots.count)", "\"precision\":\(precision)",
                "\"organic_false_positive_rate\":\(falsePositiveRate)", "\"ns_per_ballot\":\(Int(nanosPerBallot))",
            ]
            for source in Source.allCases {
                fields.append(
                    "\"\(source.rawValue)\":{\"ballots\":\(total[source] ?? 0),\"flagged\":\(flagged[source] ?? 0)}")
            }
            print("{" + fields.joined(separator: ",") + "}")
            return
        }
        print("fraud rules (defaults), seed \(self.seed): \(ballots.count) ballots, \(Int(self.minutes)) min")
        print("| traffic | ballots | flagged | recall | by rule |")
        print("| --- | ---: | ---: | ---: | --- |")
        for source in Source.allCases {
            let share =
                source == .organic
                ? "(fp \(String(format: "%.4f", falsePositiveRate)))" : String(format: "%.3f", recall(source))
            print(
                "| \(source.rawValue) | \(total[source] ?? 0) | \(flagged[source] ?? 0) | \(share) | \(rules(source)) |"
            )
        }
        print(
            String(
                format: "precision %.4f; organic false-positive rate %.4f; %.0f ns per ballot", precision,
                falsePositiveRate, nanosPerBallot))
    }
}
