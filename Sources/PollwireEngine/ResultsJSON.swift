public import NIOCore
public import PollwireCore

/// A poll's results written straight into one buffer, once per version: the full JSON every
/// reader and viewer gets, and the compact form live viewers may ask for (`format=counts`).
///
/// The full form is byte for byte what `JSONEncoder` with `.sortedKeys` and
/// `.withoutEscapingSlashes` makes of `Results` (a property test holds them together), without
/// its intermediate tree: a handful of allocations instead of dozens. Results with instant-runoff
/// rounds (ranking questions, whose round counts are keyed by option ids in Foundation's
/// numeric, case-insensitive key order) are left to `JSONEncoder`.
public enum ResultsJSON {
    /// The full results JSON, or nil when `results` holds rounds (the caller encodes those).
    public static func full(_ results: Results) -> ByteBuffer? {
        var output = ByteBuffer()
        output.reserveCapacity(Self.estimate(results))
        output.writeStaticString("{")
        if let chain = results.chain {
            output.writeStaticString("\"chain\":")
            Self.writeQuoted(chain, to: &output)
            output.writeStaticString(",")
        }
        output.writeStaticString("\"hidden\":")
        output.writeStaticString(results.hidden ? "true" : "false")
        output.writeStaticString(",\"poll\":")
        Self.writeQuoted(results.poll, to: &output)
        if let questions = results.questions {
            output.writeStaticString(",\"questions\":[")
            for (index, question) in questions.enumerated() {
                if question.rounds != nil { return nil }
                if index > 0 { output.writeStaticString(",") }
                Self.write(question, to: &output)
            }
            output.writeStaticString("]")
        }
        if let stale = results.stale {
            output.writeStaticString(stale ? ",\"stale\":true" : ",\"stale\":false")
        }
        Self.writeTotalAndVersion(results, to: &output)
        return output
    }

    /// The compact form (`format=counts`): the version and the counts only, no labels, means or
    /// rounds. `{"counts":{question: {key: count}},"poll","total","version"}`: per option for
    /// single, multiple (ballots) and ranking (Borda points), per value for rating and nps;
    /// text questions have none. `"hidden": true` and no counts while hidden; `"stale": true`
    /// while the server may be behind the store.
    public static func compact(_ results: Results) -> ByteBuffer {
        var output = ByteBuffer()
        output.reserveCapacity(Self.estimate(results))
        output.writeStaticString("{")
        if let questions = results.questions {
            output.writeStaticString("\"counts\":{")
            var first = true
            for question in questions where question.options != nil || question.distribution != nil {
                if !first { output.writeStaticString(",") }
                first = false
                Self.writeQuoted(question.id, to: &output)
                output.writeStaticString(":{")
                for (index, option) in (question.options ?? []).enumerated() {
                    if index > 0 { output.writeStaticString(",") }
                    Self.writeQuoted(option.id, to: &output)
                    output.writeStaticString(":")
                    Self.writeInteger(option.count ?? option.points ?? 0, to: &output)
                }
                for (index, value) in (question.distribution ?? []).enumerated() {
                    if index > 0 { output.writeStaticString(",") }
                    output.writeStaticString("\"")
                    Self.writeInteger(Int64(value.value), to: &output)
                    output.writeStaticString("\":")
                    Self.writeInteger(value.count, to: &output)
                }
                output.writeStaticString("}")
            }
            output.writeStaticString("},")
        }
        if results.hidden { output.writeStaticString("\"hidden\":true,") }
        output.writeStaticString("\"poll\":")
        Self.writeQuoted(results.poll, to: &output)
        if results.stale == true { output.writeStaticString(",\"stale\":true") }
        Self.writeTotalAndVersion(results, to: &output)
        return output
    }

    /// One question, its keys in sorted order; absent fields are left out, as `encodeIfPresent`
    /// leaves them.
    private static func write(_ question: Results.QuestionResults, to output: inout ByteBuffer) {
        output.writeStaticString("{")
        var first = true
        func key(_ name: StaticString) {
            if !first { output.writeStaticString(",") }
            first = false
            output.writeStaticString(name)
        }
        func integer(_ name: StaticString, _ value: Int64?) {
            guard let value else { return }
            key(name)
            Self.writeInteger(value, to: &output)
        }
        func double(_ name: StaticString, _ value: Double?) {
            guard let value else { return }
            key(name)
            Self.writeDouble(value, to: &output)
        }
        integer("\"detractors\":", question.detractors)
        if let distribution = question.distribution {
            key("\"distribution\":[")
            for (index, value) in distribution.enumerated() {
                output.writeStaticString(index > 0 ? ",{\"count\":" : "{\"count\":")
                Self.writeInteger(value.count, to: &output)
                output.writeStaticString(",\"value\":")
                Self.writeInteger(Int64(value.value), to: &output)
                output.writeStaticString("}")
            }
            output.writeStaticString("]")
        }
        key("\"id\":")
        Self.writeQuoted(question.id, to: &output)
        key("\"kind\":")
        Self.writeQuoted(question.kind.rawValue, to: &output)
        if let latest = question.latest {
            key("\"latest\":[")
            for (index, text) in latest.enumerated() {
                if index > 0 { output.writeStaticString(",") }
                Self.writeQuoted(text, to: &output)
            }
            output.writeStaticString("]")
        }
        double("\"mean\":", question.mean)
        double("\"nps\":", question.nps)
        if let options = question.options {
            key("\"options\":[")
            for (index, option) in options.enumerated() {
                output.writeStaticString(index > 0 ? ",{" : "{")
                var firstField = true
                func field(_ name: StaticString, _ value: Int64?) {
                    guard let value else { return }
                    if !firstField { output.writeStaticString(",") }
                    firstField = false
                    output.writeStaticString(name)
                    Self.writeInteger(value, to: &output)
                }
                field("\"count\":", option.count)
                field("\"firstChoices\":", option.firstChoices)
                if !firstField { output.writeStaticString(",") }
                firstField = false
                output.writeStaticString("\"id\":")
                Self.writeQuoted(option.id, to: &output)
                field("\"points\":", option.points)
                output.writeStaticString("}")
            }
            output.writeStaticString("]")
        }
        integer("\"passives\":", question.passives)
        integer("\"promoters\":", question.promoters)
        integer("\"total\":", question.total)
        if let winner = question.winner {
            key("\"winner\":")
            Self.writeQuoted(winner, to: &output)
        }
        output.writeStaticString("}")
    }

    /// `,"total":...,"version":...}`: how both forms end.
    private static func writeTotalAndVersion(_ results: Results, to output: inout ByteBuffer) {
        output.writeStaticString(",\"total\":")
        Self.writeInteger(results.total, to: &output)
        output.writeStaticString(",\"version\":")
        Self.writeInteger(results.version, to: &output)
        output.writeStaticString("}")
    }

    /// A rough size, so the buffer is allocated once.
    private static func estimate(_ results: Results) -> Int {
        var size = 96 + results.poll.utf8.count + (results.chain == nil ? 0 : 76)
        for question in results.questions ?? [] {
            size += 96 + question.id.utf8.count
            size += (question.options?.count ?? 0) * 48 + (question.distribution?.count ?? 0) * 32
            for option in question.options ?? [] { size += option.id.utf8.count }
            for text in question.latest ?? [] { size += text.utf8.count + 8 }
        }
        return size
    }

    /// Decimal digits, no allocation.
    public static func writeInteger(_ value: Int64, to output: inout ByteBuffer) {
        if value < 0 {
            output.writeInteger(UInt8(ascii: "-"))
            // Int64.min has no positive counterpart: its magnitude as UInt64.
            Self.writeDigits(value.magnitude, to: &output)
        } else {
            Self.writeDigits(UInt64(value), to: &output)
        }
    }

    private static func writeDigits(_ value: UInt64, to output: inout ByteBuffer) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 20 digits fit in 32 bytes
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[31 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            output.writeBytes(UnsafeRawBufferPointer(rebasing: raw[(32 - count)...]))
        }
    }

    /// As Foundation writes a double: its shortest description, `.0` dropped from whole numbers.
    private static func writeDouble(_ value: Double, to output: inout ByteBuffer) {
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        output.writeString(text)
    }

    /// A JSON string as Foundation writes one without escaping slashes: `"` and `\` escaped,
    /// \b \f \n \r \t by name, other control characters as `\u00xx`, everything else as is.
    static func writeQuoted(_ text: String, to output: inout ByteBuffer) {
        output.writeInteger(UInt8(ascii: "\""))
        let needsEscape = text.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        }
        if needsEscape == false {
            output.writeString(text)
        } else {
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""): output.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): output.writeStaticString("\\\\")
                case 0x08: output.writeStaticString("\\b")
                case 0x0C: output.writeStaticString("\\f")
                case UInt8(ascii: "\n"): output.writeStaticString("\\n")
                case UInt8(ascii: "\r"): output.writeStaticString("\\r")
                case UInt8(ascii: "\t"): output.writeStaticString("\\t")
                case ..<0x20:
                    output.writeStaticString("\\u00")
                    let hex: StaticString = "0123456789abcdef"
                    output.writeInteger(hex.utf8Start[Int(byte >> 4)])
                    output.writeInteger(hex.utf8Start[Int(byte & 0xF)])
                default: output.writeInteger(byte)
                }
            }
        }
        output.writeInteger(UInt8(ascii: "\""))
    }
}
