import Foundation
import PollwireCore
import PollwireEngine

/// Every configuration key `pollwire` reads, with the values it accepts (docs/configuration.md
/// lists the same keys with their meaning).
///
/// `ConfigCatalog.check` runs before any command reads its configuration: an unknown flag,
/// `POLLWIRE_*` variable or JSON key, a stray argument, or a value out of its range is refused
/// with a message that names the key and the accepted values, before anything is opened or
/// bound. swift-configuration itself falls back to a key's default when a value does not
/// convert, so without this check `--http-port abc` would start on 8080.
enum ConfigCatalog {
    /// What a key accepts.
    enum Kind {
        case int(ClosedRange<Int>)
        /// Seconds, milliseconds or a rate: a number in the range.
        case double(ClosedRange<Double>)
        case bool
        /// One of these words (case-insensitive).
        case choice([String])
        case string
        /// Comma-separated on the command line and in the environment, an array in the file.
        case strings
        /// Window widths (`Timeline.seconds(ofWidth:)`), listed as `strings` are.
        case widths
    }

    struct Key {
        let name: String
        let kind: Kind
    }

    static let keys: [Key] = [
        Key(name: "store", kind: .string),
        Key(name: "data.dir", kind: .string),
        Key(name: "sqlite.synchronous", kind: .choice(["FULL", "NORMAL"])),
        Key(name: "postgres.maxConnections", kind: .int(2...1000)),
        Key(name: "postgres.partitionMonthsAhead", kind: .int(0...120)),
        Key(name: "log.level", kind: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"])),
        Key(name: "http.host", kind: .string),
        Key(name: "http.port", kind: .int(0...65535)),
        Key(name: "http.maxBodyBytes", kind: .int(1...(1 << 30))),
        Key(name: "http.maxBatchBodyBytes", kind: .int(1...(1 << 30))),
        Key(name: "http.maxBatchBallots", kind: .int(1...100_000)),
        Key(name: "http.requestReadTimeout", kind: .double(0.001...3600)),
        Key(name: "http.idleTimeout", kind: .double(0.001...86_400)),
        Key(name: "http.http2", kind: .bool),
        Key(name: "results.maxAge", kind: .int(0...86_400)),
        Key(name: "results.sharedMaxAge", kind: .int(0...86_400)),
        Key(name: "results.staleWhileRevalidate", kind: .int(0...86_400)),
        Key(name: "results.latestText", kind: .int(0...1000)),
        Key(name: "ingest.retryAfter", kind: .int(1...3600)),
        Key(name: "ingest.maxBatch", kind: .int(1...100_000)),
        Key(name: "ingest.ballotChain", kind: .bool),
        Key(name: "analytics.windows", kind: .widths),
        Key(name: "analytics.allowedLatenessSeconds", kind: .int(0...604_800)),
        Key(name: "ingest.maxDelayMs", kind: .double(0...1000)),
        Key(name: "ingest.queueCapacity", kind: .int(1...10_000_000)),
        Key(name: "ingest.commitDeadlineSeconds", kind: .double(0.001...3600)),
        Key(name: "ingest.breakerThreshold", kind: .int(1...1000)),
        Key(name: "ingest.breakerCooldownSeconds", kind: .double(0.001...3600)),
        Key(name: "live.publishIntervalMs", kind: .double(1...60_000)),
        Key(name: "live.heartbeatSeconds", kind: .double(0.1...3600)),
        Key(name: "live.stuckSeconds", kind: .double(0.1...3600)),
        Key(name: "live.shards", kind: .int(1...1024)),
        Key(name: "ratelimit.votesPerIpRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.votesPerIpBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.votesPerVoterRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.votesPerVoterBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.deviceTokensPerIpRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.deviceTokensPerIpBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.managementPerKeyRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.managementPerKeyBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.invalidKeysPerIpRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.invalidKeysPerIpBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.proofsPerIpRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.timelinesPerIpRate", kind: .double(0...1e9)),
        Key(name: "ratelimit.timelinesPerIpBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.proofsPerIpBurst", kind: .int(1...1_000_000_000)),
        Key(name: "ratelimit.allowList", kind: .strings),
        Key(name: "ratelimit.trustedProxies", kind: .strings),
        Key(name: "ratelimit.capacity", kind: .int(1...100_000_000)),
        Key(name: "admission.maxInFlight", kind: .int(1...1_000_000)),
        Key(name: "admission.maxManagementInFlight", kind: .int(1...1_000_000)),
        Key(name: "admission.retryAfter", kind: .int(1...3600)),
        Key(name: "admission.maxLoopDelayMs", kind: .double(0...60_000)),
        Key(name: "purge.url", kind: .string),
        Key(name: "purge.method", kind: .choice(["PURGE", "BAN"])),
        Key(name: "purge.intervalSeconds", kind: .double(0.001...3600)),
        Key(name: "purge.maxPending", kind: .int(1...10_000_000)),
        Key(name: "compression.minimumBytes", kind: .int(0...(1 << 30))),
        Key(name: "compression.webSocketDeflate", kind: .bool),
        Key(name: "web.dir", kind: .string),
        Key(name: "tls.certificate", kind: .string),
        Key(name: "tls.key", kind: .string),
    ]

    /// Environment variables with the prefix that are not keys: where the file is.
    static let environmentNonKeys: Set<String> = ["POLLWIRE_CONFIG_FILE"]

    /// Checks every source. Throws the first problem found, naming the key and what it accepts.
    static func check(
        arguments: [String], environment: [String: String], file: [String: JSONValue]?
    ) throws(ConfigurationError) {
        let byFlag = Dictionary(uniqueKeysWithValues: Self.keys.map { (Self.flag($0.name), $0) })
        let byVariable = Dictionary(uniqueKeysWithValues: Self.keys.map { (Self.variable($0.name), $0) })
        let byName = Dictionary(uniqueKeysWithValues: Self.keys.map { ($0.name, $0) })

        for (flag, values) in try Self.parse(arguments) {
            guard let key = byFlag[flag] else {
                throw ConfigurationError("unknown option \(flag)\(Self.suggestion(flag, among: byFlag.keys))")
            }
            try Self.check(key, text: values, source: flag)
        }
        for (variable, value) in environment where variable.hasPrefix("POLLWIRE_") {
            guard !Self.environmentNonKeys.contains(variable) else { continue }
            guard let key = byVariable[variable] else {
                throw ConfigurationError(
                    "unknown environment variable \(variable)\(Self.suggestion(variable, among: byVariable.keys))")
            }
            try Self.check(key, text: [value], source: variable)
        }
        if let file {
            for (name, value) in Self.flatten(file) {
                guard let key = byName[name] else {
                    throw ConfigurationError(
                        "unknown key \"\(name)\" in the configuration file\(Self.suggestion(name, among: byName.keys))")
                }
                try Self.check(key, json: value, source: "\"\(name)\" in the configuration file")
            }
        }
        let certificate = Self.isSet("tls.certificate", arguments, environment, file)
        if certificate != Self.isSet("tls.key", arguments, environment, file) {
            throw ConfigurationError("tls.certificate and tls.key go together: give both, or neither")
        }
    }

    // MARK: Sources

    /// `--key value`, `--key=value`, `--flag` (a bool); anything else is a stray argument.
    static func parse(_ arguments: [String]) throws(ConfigurationError) -> [(String, [String])] {
        var parsed: [(String, [String])] = []
        for argument in arguments {
            if argument.hasPrefix("--") {
                if let equals = argument.firstIndex(of: "=") {
                    parsed.append((String(argument[..<equals]), [String(argument[argument.index(after: equals)...])]))
                } else {
                    parsed.append((argument, []))
                }
            } else if let last = parsed.indices.last, !parsed[last].0.isEmpty, parsed[last].1.isEmpty {
                parsed[last].1.append(argument)
            } else {
                throw ConfigurationError(
                    "unexpected argument \"\(argument)\": settings are given as --key value (see docs/configuration.md)"
                )
            }
        }
        return parsed
    }

    /// The file's leaves under their dotted names; arrays are values.
    static func flatten(_ object: [String: JSONValue], prefix: String = "") -> [(String, JSONValue)] {
        object.flatMap { name, value -> [(String, JSONValue)] in
            let dotted = prefix.isEmpty ? name : "\(prefix).\(name)"
            if case .object(let nested) = value { return Self.flatten(nested, prefix: dotted) }
            return [(dotted, value)]
        }
    }

    /// Reads the configuration file as JSON, to check its keys.
    static func readFile(_ path: String) throws(ConfigurationError) -> [String: JSONValue] {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ConfigurationError("the configuration file \(path) is not readable JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw ConfigurationError("the configuration file \(path) must hold a JSON object")
        }
        return object
    }

    private static func isSet(
        _ name: String, _ arguments: [String], _ environment: [String: String], _ file: [String: JSONValue]?
    ) -> Bool {
        let flag = Self.flag(name)
        return arguments.contains { $0 == flag || $0.hasPrefix(flag + "=") }
            || environment[Self.variable(name)] != nil
            || Self.flatten(file ?? [:]).contains { $0.0 == name }
    }

    // MARK: Values

    private static func check(_ key: Key, text values: [String], source: String) throws(ConfigurationError) {
        if case .bool = key.kind, values.isEmpty { return }
        if case .strings = key.kind { return }
        if case .widths = key.kind {
            let widths = values.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            guard !widths.isEmpty, widths.allSatisfy({ Timeline.seconds(ofWidth: $0) != nil }) else {
                throw ConfigurationError(
                    "\(source) is \"\(values.joined(separator: ","))\": it must be \(key.kind.accepted)")
            }
            return
        }
        guard values.count == 1, let value = values.first else {
            throw ConfigurationError("\(source) takes one value: \(key.kind.accepted)")
        }
        guard key.kind.accepts(text: value) else {
            throw ConfigurationError("\(source) is \"\(value)\": it must be \(key.kind.accepted)")
        }
    }

    private static func check(_ key: Key, json value: JSONValue, source: String) throws(ConfigurationError) {
        let ok: Bool
        switch (key.kind, value) {
        case (.int(let range), .number(let number)):
            ok = number == number.rounded() && abs(number) < 1e15 && range.contains(Int(number))
        case (.double(let range), .number(let number)): ok = range.contains(number)
        case (.bool, .bool): ok = true
        case (.choice, .string(let text)), (.string, .string(let text)): ok = key.kind.accepts(text: text)
        case (.widths, .array(let items)):
            ok =
                !items.isEmpty
                && items.allSatisfy {
                    if case .string(let text) = $0 { return Timeline.seconds(ofWidth: text) != nil }
                    return false
                }
        case (.strings, .array(let items)):
            ok = items.allSatisfy {
                if case .string = $0 { return true }
                return false
            }
        default: ok = false
        }
        guard ok else { throw ConfigurationError("\(source) is \(value): it must be \(key.kind.accepted)") }
    }

    // MARK: Names

    /// `http.maxBodyBytes` -> `--http-max-body-bytes` (as swift-configuration's CLI provider).
    static func flag(_ name: String) -> String {
        "--" + Self.words(name).joined(separator: "-").lowercased()
    }

    /// `http.maxBodyBytes` -> `POLLWIRE_HTTP_MAX_BODY_BYTES` (as its environment provider).
    static func variable(_ name: String) -> String {
        "POLLWIRE_" + Self.words(name).joined(separator: "_").uppercased()
    }

    private static func words(_ name: String) -> [String] {
        name.split(separator: ".").flatMap { component -> [String] in
            var words: [String] = []
            var current = ""
            var previous: Character?
            for character in component {
                if let previous, previous.isLowercase, character.isUppercase {
                    words.append(current)
                    current = ""
                }
                current.append(character)
                previous = character
            }
            words.append(current)
            return words
        }
    }

    /// ", did you mean --http-port?" when a known name is close (edit distance at most 2).
    private static func suggestion(_ name: String, among names: Dictionary<String, Key>.Keys) -> String {
        let close = names.map { ($0, Self.distance(name, $0)) }.filter { $0.1 <= 2 }.min { $0.1 < $1.1 }
        return close.map { ", did you mean \($0.0)?" } ?? " (docs/configuration.md lists every key)"
    }

    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
}

extension ConfigCatalog.Kind {
    func accepts(text value: String) -> Bool {
        switch self {
        case .int(let range): Int(value).map(range.contains) ?? false
        case .double(let range): Double(value).map { $0.isFinite && range.contains($0) } ?? false
        case .bool: ["true", "false", "yes", "no", "1", "0"].contains(value.lowercased())
        case .choice(let words): words.contains { $0.lowercased() == value.lowercased() }
        case .string: !value.isEmpty
        case .strings: true
        case .widths: value.split(separator: ",").allSatisfy { Timeline.seconds(ofWidth: $0) != nil }
        }
    }

    /// What the key accepts, in words.
    var accepted: String {
        switch self {
        case .int(let range): "a whole number from \(range.lowerBound) to \(range.upperBound)"
        case .double(let range): "a number from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))"
        case .bool: "true or false"
        case .choice(let words): "one of \(words.joined(separator: ", "))"
        case .string: "a non-empty string"
        case .strings: "a list of strings"
        case .widths: "a list of window widths: whole seconds, minutes or hours such as 1s, 10s, 1m, 1h (up to 1 day)"
        }
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
