public import PollwireCore

/// One ballot as the fraud rules see it, at its arrival: when, from where (the client
/// address's /24 for IPv4, /64 for IPv6), which client (a hash of User-Agent and
/// Accept-Language) and, for a device token, where and when the token was minted.
public struct BallotSignal: Sendable, Equatable {
    /// Microseconds since 1970.
    public var micros: Int64
    public var prefix: String
    public var fingerprint: UInt64
    public var device: DeviceMint?

    public struct DeviceMint: Sendable, Equatable {
        /// The prefix of the address that asked for the token.
        public var prefix: String
        public var micros: Int64

        public init(prefix: String, micros: Int64) {
            self.prefix = prefix
            self.micros = micros
        }
    }

    public init(micros: Int64, prefix: String, fingerprint: UInt64, device: DeviceMint? = nil) {
        self.micros = micros
        self.prefix = prefix
        self.fingerprint = fingerprint
        self.device = device
    }
}

/// The fraud rules of a poll, declared as data (server defaults `fraud.*`, a poll's own
/// `settings.fraud` over them); a rule left out (or `null`) is off. Each catches one shape of
/// stuffing and misses others (docs/fraud.md):
///
/// - `prefixBurst`: one address prefix casting, in the last `windowSeconds`, more than `factor`
///   times its own share of the poll's longer history (`historySeconds`; at least `minShare` of
///   all ballots, so a prefix new to the poll needs a real burst) and at least `minBallots`. A
///   big NAT that always carries many voters is its own baseline. Misses stuffing spread over
///   many prefixes (proxies) and a prefix that stays under the bar (slow stuffing); flags a
///   venue's shared network while the poll has no history for it (allow-list such prefixes).
/// - `mintedDevices`: more than `maxDevices` device tokens minted from one prefix within
///   `windowSeconds` of each other voting from other prefixes (people mostly vote from where
///   they got their token; a farm mints in one place and votes through proxies). Misses tokens
///   minted from many prefixes, and farms that vote from where they mint (`prefixBurst`'s).
/// - `fingerprintBurst`: the same test for one client fingerprint. Misses bots that copy a
///   common browser's headers at that browser's usual rate, or rotate fingerprints.
/// - `metronome`: a prefix whose last `minBallots` inter-arrival times vary less than
///   `maxVariation` (standard deviation over mean; people arrive at random, about 1). Misses
///   bots that add random delays.
public struct FraudRules: Sendable, Equatable {
    /// One key (a prefix, a fingerprint) casting more than `factor` times its usual share.
    public struct Burst: Sendable, Equatable {
        public var windowSeconds: Int64
        public var historySeconds: Int64
        public var factor: Double
        public var minShare: Double
        public var minBallots: Int
        /// Ballots the history must hold before the rule judges (0: from the first ballot, the
        /// `minShare` floor alone standing for the history).
        public var minHistory: Int

        public init(
            windowSeconds: Int64, historySeconds: Int64, factor: Double, minShare: Double, minBallots: Int,
            minHistory: Int
        ) {
            self.windowSeconds = windowSeconds
            self.historySeconds = historySeconds
            self.factor = factor
            self.minShare = minShare
            self.minBallots = minBallots
            self.minHistory = minHistory
        }

        /// No organic prefix carries a tenth of a poll's ballots: judged from the first ballot.
        public static let prefix = Burst(
            windowSeconds: 10, historySeconds: 600, factor: 5, minShare: 0.02, minBallots: 15, minHistory: 0)
        /// The most common browser carries a fifth or more: judged once the history knows it.
        public static let fingerprint = Burst(
            windowSeconds: 10, historySeconds: 600, factor: 4, minShare: 0.01, minBallots: 20, minHistory: 500)
    }

    public struct MintedDevices: Sendable, Equatable {
        public var windowSeconds: Int64 = 300
        public var maxDevices: Int = 20
    }

    public struct Metronome: Sendable, Equatable {
        public var minBallots: Int = 10
        public var maxVariation: Double = 0.2
    }

    public var prefixBurst: Burst?
    public var mintedDevices: MintedDevices?
    public var fingerprintBurst: Burst?
    public var metronome: Metronome?

    public init(
        prefixBurst: Burst? = nil, mintedDevices: MintedDevices? = nil, fingerprintBurst: Burst? = nil,
        metronome: Metronome? = nil
    ) {
        self.prefixBurst = prefixBurst
        self.mintedDevices = mintedDevices
        self.fingerprintBurst = fingerprintBurst
        self.metronome = metronome
    }

    /// Every rule on, with its defaults.
    public static let defaults = FraudRules(
        prefixBurst: .prefix, mintedDevices: MintedDevices(), fingerprintBurst: .fingerprint, metronome: Metronome())

    /// The rule names, as configuration and evidence spell them.
    public static let names = ["prefixBurst", "mintedDevices", "fingerprintBurst", "metronome"]
}

extension FraudRules {
    /// Rules from their JSON form (`{"prefixBurst": {"factor": 8}, "metronome": null, ...}`),
    /// each rule's fields over its defaults, and rules not named left as in `base`. Anything
    /// unknown or out of range throws naming its field under `field`.
    public init(json: [String: JSONValue], over base: FraudRules = .defaults, field: String) throws(ValidationError) {
        self = base
        for (name, value) in json {
            let path = "\(field).\(name)"
            guard Self.names.contains(name) else {
                throw ValidationError(field: path, "is not a rule; rules are \(Self.names.joined(separator: ", "))")
            }
            if case .null = value {
                switch name {
                case "prefixBurst": self.prefixBurst = nil
                case "mintedDevices": self.mintedDevices = nil
                case "fingerprintBurst": self.fingerprintBurst = nil
                default: self.metronome = nil
                }
                continue
            }
            guard case .object(let fields) = value else {
                throw ValidationError(field: path, "must be an object of the rule's settings, or null to turn it off")
            }
            var reader = Fields(fields: fields, path: path)
            switch name {
            case "prefixBurst":
                self.prefixBurst = try reader.burst(over: self.prefixBurst ?? .prefix)
            case "mintedDevices":
                var rule = self.mintedDevices ?? MintedDevices()
                rule.windowSeconds = try reader.int("windowSeconds", rule.windowSeconds, 1...86_400)
                rule.maxDevices = Int(try reader.int("maxDevices", Int64(rule.maxDevices), 1...1_000_000))
                self.mintedDevices = rule
            case "fingerprintBurst":
                self.fingerprintBurst = try reader.burst(over: self.fingerprintBurst ?? .fingerprint)
            default:
                var rule = self.metronome ?? Metronome()
                rule.minBallots = Int(try reader.int("minBallots", Int64(rule.minBallots), 3...1000))
                rule.maxVariation = try reader.double("maxVariation", rule.maxVariation, 0...10)
                self.metronome = rule
            }
            try reader.finish()
        }
    }

    /// A rule's settings, each read once; `finish` refuses the ones no rule has.
    struct Fields {
        var fields: [String: JSONValue]
        let path: String

        mutating func int(
            _ name: String, _ fallback: Int64, _ range: ClosedRange<Int64>
        ) throws(ValidationError)
            -> Int64
        {
            guard let value = self.fields.removeValue(forKey: name) else { return fallback }
            guard case .number(let number) = value, number == number.rounded(),
                range.contains(Int64(exactly: number) ?? .min)
            else {
                throw ValidationError(
                    field: "\(self.path).\(name)",
                    "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return Int64(number)
        }

        mutating func double(
            _ name: String, _ fallback: Double, _ range: ClosedRange<Double>
        ) throws(ValidationError)
            -> Double
        {
            guard let value = self.fields.removeValue(forKey: name) else { return fallback }
            guard case .number(let number) = value, range.contains(number) else {
                throw ValidationError(
                    field: "\(self.path).\(name)", "must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }

        mutating func burst(over rule: Burst) throws(ValidationError) -> Burst {
            var rule = rule
            rule.windowSeconds = try self.int("windowSeconds", rule.windowSeconds, 1...3600)
            rule.historySeconds = try self.int("historySeconds", rule.historySeconds, 2...86_400)
            rule.factor = try self.double("factor", rule.factor, 1...1_000_000)
            rule.minShare = try self.double("minShare", rule.minShare, 0...1)
            rule.minBallots = Int(try self.int("minBallots", Int64(rule.minBallots), 1...1_000_000))
            rule.minHistory = Int(try self.int("minHistory", Int64(rule.minHistory), 0...100_000_000))
            guard rule.historySeconds > rule.windowSeconds else {
                throw ValidationError(field: "\(self.path).historySeconds", "must be longer than windowSeconds")
            }
            return rule
        }

        func finish() throws(ValidationError) {
            if let name = self.fields.keys.sorted().first {
                throw ValidationError(field: "\(self.path).\(name)", "is not a setting of this rule")
            }
        }
    }
}

/// Why a ballot was flagged: the rule and what it saw.
public struct FraudFlag: Sendable, Equatable {
    public var rule: String
    public var evidence: String
}

/// The rules' state for ONE poll, fed every ballot in arrival order (`evaluate`): per prefix and
/// fingerprint, counts per second over the longest window a rule looks at, the mint times of
/// the device tokens seen, and the last inter-arrival times. Bounded: at most `maxKeys` prefixes,
/// fingerprints and mint prefixes each (the least recently seen go first); seconds older than
/// the longest window are dropped as time moves on.
public struct FraudDetector: Sendable {
    public let rules: FraudRules
    /// Most keys (prefixes, fingerprints, mint prefixes) kept per kind.
    public static let maxKeys = 20_000

    private var prefixes: SlidingCounts<String>
    private var fingerprints: SlidingCounts<UInt64>
    private var mints: [String: [Int64]] = [:]
    private var mintSeen: [String: Int64] = [:]
    private var arrivals: [String: ArrivalGaps] = [:]

    public init(rules: FraudRules) {
        self.rules = rules
        let prefix = rules.prefixBurst ?? .prefix
        self.prefixes = SlidingCounts(
            window: prefix.windowSeconds, history: prefix.historySeconds, maxKeys: Self.maxKeys)
        let fingerprint = rules.fingerprintBurst ?? .fingerprint
        self.fingerprints = SlidingCounts(
            window: fingerprint.windowSeconds, history: fingerprint.historySeconds, maxKeys: Self.maxKeys)
    }

    /// Records `signal` and returns the first rule it trips (nil: none). A flagged ballot still
    /// counts towards the windows: a burst keeps being flagged while it lasts.
    public mutating func evaluate(_ signal: BallotSignal) -> FraudFlag? {
        let second = signal.micros / 1_000_000
        var flag: FraudFlag?
        if let rule = self.rules.prefixBurst, let seen = Self.burst(rule, self.prefixes.add(signal.prefix, at: second))
        {
            flag = FraudFlag(rule: "prefixBurst", evidence: "\(signal.prefix) " + seen)
        }
        if let rule = self.rules.mintedDevices, let device = signal.device, device.prefix != signal.prefix {
            // Tokens minted from one prefix and voting from another: the times they were minted.
            // Taken out and put back: the array is mutated in place, not copied.
            var times = self.mints.removeValue(forKey: device.prefix) ?? []
            let window = rule.windowSeconds * 1_000_000
            let at = Self.insertionIndex(of: device.micros, in: times)
            if at == times.count || times[at] != device.micros { times.insert(device.micros, at: at) }
            // Mint times far before this ballot's token are of no window any more.
            let old = Self.insertionIndex(of: signal.micros - 86_400_000_000 - window, in: times)
            if old > 0 { times.removeFirst(old) }
            self.mints[device.prefix] = times
            self.mintSeen[device.prefix] = signal.micros
            for key in evictOldest(&self.mintSeen, over: Self.maxKeys, seen: { $0 }) {
                self.mints.removeValue(forKey: key)
            }
            let near =
                Self.insertionIndex(of: device.micros + window + 1, in: times)
                - Self.insertionIndex(of: device.micros - window, in: times)
            if flag == nil, near > rule.maxDevices {
                flag = FraudFlag(
                    rule: "mintedDevices",
                    evidence:
                        "\(near) device tokens minted from \(device.prefix) within \(rule.windowSeconds) s vote from other prefixes"
                )
            }
        }
        if let rule = self.rules.fingerprintBurst,
            let seen = Self.burst(rule, self.fingerprints.add(signal.fingerprint, at: second)), flag == nil
        {
            flag = FraudFlag(rule: "fingerprintBurst", evidence: "one client fingerprint " + seen)
        }
        if let rule = self.rules.metronome {
            var gaps = ArrivalGaps(capacity: rule.minBallots)
            modify(&self.arrivals[signal.prefix, default: gaps]) { arrivals in
                arrivals.add(signal.micros)
                gaps = arrivals
            }
            evictOldest(&self.arrivals, over: Self.maxKeys, seen: \.last)
            if flag == nil, let variation = gaps.variation, variation < rule.maxVariation {
                flag = FraudFlag(
                    rule: "metronome",
                    evidence:
                        "\(signal.prefix): \(rule.minBallots) ballots \(Self.format(gaps.meanSeconds)) s apart, varying \(Self.format(variation * 100)) %"
                )
            }
        }
        return flag
    }

    /// What `rule` sees of a key from its counts and the totals: nil when it is not a burst.
    static func burst(_ rule: FraudRules.Burst, _ counts: (key: RunningCounts, all: RunningCounts)) -> String? {
        let count = counts.key.inWindow
        guard count >= rule.minBallots else { return nil }
        let history = counts.key.inHistory - count
        let historyTotal = counts.all.inHistory - counts.all.inWindow
        guard historyTotal >= rule.minHistory else { return nil }
        let total = counts.all.inWindow
        let usual = max(rule.minShare, historyTotal > 0 ? Double(history) / Double(historyTotal) : 0)
        let share = Double(count) / Double(max(1, total))
        guard share > rule.factor * usual else { return nil }
        return
            "cast \(count) of \(total) ballots in \(rule.windowSeconds) s (\(Self.format(share * 100)) %; usually \(Self.format(usual * 100)) %)"
    }

    /// The first index of `sorted` whose value is not below `value`.
    static func insertionIndex(of value: Int64, in sorted: [Int64]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
    }
}

/// Counts per second of one key (or of all), with running sums over the last `window` seconds
/// and the last `history` seconds: adding and reading cost O(1) amortised, whatever the window.
struct RunningCounts: Sendable {
    private var seconds: [Int64] = []
    private var counts: [Int] = []
    private var historyHead = 0
    private var windowHead = 0
    private(set) var inHistory = 0
    private(set) var inWindow = 0
    private(set) var last: Int64 = .min

    /// Drops what has left the windows at `second`.
    mutating func advance(to second: Int64, window: Int64, history: Int64) {
        while self.historyHead < self.seconds.count, self.seconds[self.historyHead] <= second - history {
            self.inHistory -= self.counts[self.historyHead]
            self.historyHead += 1
        }
        if self.windowHead < self.historyHead {
            // Seconds that left the history left the window before: they are out of both sums.
            self.windowHead = self.historyHead
        }
        while self.windowHead < self.seconds.count, self.seconds[self.windowHead] <= second - window {
            self.inWindow -= self.counts[self.windowHead]
            self.windowHead += 1
        }
        if self.historyHead > 64, self.historyHead * 2 > self.seconds.count {
            self.seconds.removeFirst(self.historyHead)
            self.counts.removeFirst(self.historyHead)
            self.windowHead -= self.historyHead
            self.historyHead = 0
        }
    }

    mutating func add(at second: Int64) {
        if self.seconds.last == second {
            self.counts[self.counts.count - 1] += 1
        } else {
            self.seconds.append(second)
            self.counts.append(1)
        }
        self.inHistory += 1
        self.inWindow += 1
        self.last = second
    }
}

/// `RunningCounts` per key and over all keys, for one rule's window and history; at most
/// `maxKeys` keys (those seen longest ago go first).
struct SlidingCounts<Key: Hashable & Sendable>: Sendable {
    let window: Int64
    let history: Int64
    let maxKeys: Int
    private var perKey: [Key: RunningCounts] = [:]
    private(set) var all = RunningCounts()

    init(window: Int64, history: Int64, maxKeys: Int) {
        self.window = window
        self.history = history
        self.maxKeys = maxKeys
    }

    /// Adds a ballot of `key` at `second` and returns its counts and the totals, current.
    mutating func add(_ key: Key, at second: Int64) -> (key: RunningCounts, all: RunningCounts) {
        self.all.advance(to: second, window: self.window, history: self.history)
        self.all.add(at: second)
        var counts = RunningCounts()
        // In place, through the dictionary's one lookup: hashing was the rules' largest cost.
        modify(&self.perKey[key, default: RunningCounts()]) { key in
            key.advance(to: second, window: self.window, history: self.history)
            key.add(at: second)
            counts = key
        }
        evictOldest(&self.perKey, over: self.maxKeys, seen: \.last)
        return (counts, self.all)
    }
}

/// The last arrivals of one prefix: how regular their gaps are.
struct ArrivalGaps: Sendable {
    private var times: [Int64] = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var last: Int64 { self.times.last ?? .min }

    mutating func add(_ micros: Int64) {
        self.times.append(micros)
        if self.times.count > self.capacity { self.times.removeFirst(self.times.count - self.capacity) }
    }

    var meanSeconds: Double {
        guard self.times.count > 1 else { return 0 }
        return Double(self.times.last! - self.times.first!) / Double(self.times.count - 1) / 1e6
    }

    /// Standard deviation over mean of the gaps, once `capacity` arrivals are in.
    var variation: Double? {
        guard self.times.count == self.capacity, self.capacity >= 3 else { return nil }
        let count = Double(self.times.count - 1)
        let mean = Double(self.times[self.times.count - 1] - self.times[0]) / count
        guard mean > 0 else { return 0 }
        var squares = 0.0
        for index in 1..<self.times.count {
            let gap = Double(self.times[index] - self.times[index - 1]) - mean
            squares += gap * gap
        }
        return (squares / count).squareRoot() / mean
    }
}

/// Over `limit` entries, drops the tenth of `limit` seen longest ago (by `seen`) and returns their
/// keys: one sort per `limit / 10` new keys, not a scan of every key per ballot at the cap (a
/// flood of rotating proxies keeps a detector at its cap).
@discardableResult
func evictOldest<Key, Value>(_ entries: inout [Key: Value], over limit: Int, seen: (Value) -> Int64) -> [Key] {
    guard entries.count > limit else { return [] }
    let keep = limit - limit / 10
    let oldest = entries.sorted { seen($0.value) < seen($1.value) }.prefix(entries.count - keep).map(\.key)
    for key in oldest { entries.removeValue(forKey: key) }
    return oldest
}

/// Runs `body` on `value` in place (for a dictionary entry: one lookup, no copy of its storage).
func modify<Value>(_ value: inout Value, _ body: (inout Value) -> Void) {
    body(&value)
}
