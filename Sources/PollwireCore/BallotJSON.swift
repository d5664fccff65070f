public import Foundation

/// The body of `POST /v1/polls/{id}/votes`.
public struct VoteBody: Decodable, Sendable, Equatable {
    /// External voter id, for polls that dedupe by voter.
    public var voter: String?
    /// Device token, for polls that dedupe by device (or the `Pollwire-Device` header).
    public var device: String?
    public var answers: [String: Answer]

    public init(voter: String? = nil, device: String? = nil, answers: [String: Answer]) {
        self.voter = voter
        self.device = device
        self.answers = answers
    }
}

/// The body of `POST /v1/votes:batch`.
public struct BatchBody: Decodable, Sendable, Equatable {
    public var ballots: [Ballot]

    /// One ballot of a batch.
    public struct Ballot: Decodable, Sendable, Equatable {
        public var poll: String
        public var voter: String?
        public var device: String?
        public var idempotencyKey: String?
        public var answers: [String: Answer]
        /// When the ballot was cast, if the sender (an edge or an import) knows better than the
        /// time it arrives: its event time (`VoteCommand.CastAt`).
        public var castAt: Date?

        public init(
            poll: String, voter: String? = nil, device: String? = nil, idempotencyKey: String? = nil,
            answers: [String: Answer], castAt: Date? = nil
        ) {
            self.poll = poll
            self.voter = voter
            self.device = device
            self.idempotencyKey = idempotencyKey
            self.answers = answers
            self.castAt = castAt
        }
    }

    public init(ballots: [Ballot]) { self.ballots = ballots }
}

/// Vote and batch bodies read straight from their bytes: no Foundation, no intermediate tree.
///
/// It reads the bodies clients send (objects of the known keys; strings with the short escapes;
/// integers) and gives up, returning nil, at anything else: `\u` escapes, fractions, exponents,
/// unknown or repeated keys, invalid UTF-8, malformed JSON. The caller then decodes the same
/// bytes with `JSONDecoder`, which either reads them too or makes the error (naming the JSON
/// path) the API returns, so both decoders give the same value for every body this one reads
/// (a property test and `pollwire-bench fuzz-bodies` hold them together) and every error is
/// still `JSONDecoder`'s.
public enum BallotJSON {
    public static func vote(_ bytes: UnsafeRawBufferPointer) -> VoteBody? {
        var reader = Reader(bytes: bytes)
        guard let body = reader.voteBody(), reader.atEnd() else { return nil }
        return body
    }

    public static func batch(_ bytes: UnsafeRawBufferPointer) -> BatchBody? {
        var reader = Reader(bytes: bytes)
        var ballots: [BatchBody.Ballot]?
        let read = Reader.object(&reader) { key, reader in
            guard key == "ballots", ballots == nil, reader.take(UInt8(ascii: "[")) else { return false }
            var list: [BatchBody.Ballot] = []
            if !reader.take(UInt8(ascii: "]")) {
                repeat {
                    guard let ballot = reader.batchBallot() else { return false }
                    list.append(ballot)
                } while reader.take(UInt8(ascii: ","))
                guard reader.take(UInt8(ascii: "]")) else { return false }
            }
            ballots = list
            return true
        }
        guard read, let ballots, reader.atEnd() else { return nil }
        return BatchBody(ballots: ballots)
    }

    /// The reader itself, for other small formats read the same way (fast, nil at anything odd).
    public struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        public init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func skipSpace() {
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
                default: return
                }
            }
        }

        /// Takes `byte` (after any whitespace) if it is next.
        public mutating func take(_ byte: UInt8) -> Bool {
            self.skipSpace()
            guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
            self.index += 1
            return true
        }

        public mutating func atEnd() -> Bool {
            self.skipSpace()
            return self.index == self.bytes.count
        }

        /// `null` if it is next.
        public mutating func takeNull() -> Bool {
            self.skipSpace()
            guard self.index + 4 <= self.bytes.count, self.bytes[self.index] == UInt8(ascii: "n"),
                self.bytes[self.index + 1] == UInt8(ascii: "u"), self.bytes[self.index + 2] == UInt8(ascii: "l"),
                self.bytes[self.index + 3] == UInt8(ascii: "l")
            else { return false }
            self.index += 4
            return true
        }

        /// A string with no `\u` escape, valid UTF-8 and no control characters.
        public mutating func string() -> String? {
            guard self.take(UInt8(ascii: "\"")) else { return nil }
            let start = self.index
            var high: UInt8 = 0
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    let raw = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index])
                    self.index += 1
                    // ASCII (the usual ids) needs no validation; anything else must be valid UTF-8.
                    return high < 0x80 ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
                }
                high |= byte
                if byte == UInt8(ascii: "\\") {
                    return self.escapedString(from: start)
                }
                if byte < 0x20 { return nil }
                self.index += 1
            }
            return nil
        }

        /// The rest of a string that has an escape in it.
        private mutating func escapedString(from start: Int) -> String? {
            var text = Array(self.bytes[start..<self.index])
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(validating: text, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard self.index < self.bytes.count else { return nil }
                    let escape = self.bytes[self.index]
                    self.index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(escape)
                    case UInt8(ascii: "b"): text.append(0x08)
                    case UInt8(ascii: "f"): text.append(0x0C)
                    case UInt8(ascii: "n"): text.append(0x0A)
                    case UInt8(ascii: "r"): text.append(0x0D)
                    case UInt8(ascii: "t"): text.append(0x09)
                    default: return nil
                    }
                case ..<0x20:
                    return nil
                default:
                    text.append(byte)
                }
            }
            return nil
        }

        /// A string or `null` for an optional field: nil when neither is next.
        mutating func optionalString() -> String?? {
            if self.takeNull() { return .some(nil) }
            return self.string().map { .some($0) }
        }

        /// `null` or a date as `PollwireJSON` reads one (the same parse, so the same value).
        mutating func optionalDate() -> Date?? {
            if self.takeNull() { return .some(nil) }
            return self.string().flatMap(PollwireJSON.date).map { .some($0) }
        }

        /// An integer: `-`, then `0` or digits not starting with `0`, within `Int`.
        public mutating func integer() -> Int? {
            self.skipSpace()
            var negative = false
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") {
                negative = true
                self.index += 1
            }
            let start = self.index
            var value = 0
            while self.index < self.bytes.count,
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index])
            {
                let digit = Int(self.bytes[self.index] - UInt8(ascii: "0"))
                let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) =
                    negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
                guard !overflow, !overflow2 else { return nil }
                value = sum
                self.index += 1
            }
            let count = self.index - start
            guard count > 0, count == 1 || self.bytes[start] != UInt8(ascii: "0") else { return nil }
            // A fraction or an exponent is left to JSONDecoder.
            if self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
                default: break
                }
            }
            return value
        }

        /// An answer: a list of strings, an integer or a string.
        mutating func answer() -> Answer? {
            self.skipSpace()
            guard self.index < self.bytes.count else { return nil }
            switch self.bytes[self.index] {
            case UInt8(ascii: "["):
                self.index += 1
                var options: [String] = []
                if self.take(UInt8(ascii: "]")) { return .options(options) }
                repeat {
                    guard let option = self.string() else { return nil }
                    options.append(option)
                } while self.take(UInt8(ascii: ","))
                return self.take(UInt8(ascii: "]")) ? .options(options) : nil
            case UInt8(ascii: "\""):
                return self.string().map { .text($0) }
            default:
                return self.integer().map { .number($0) }
            }
        }

        /// `{"key": value, ...}`: `field` reads each value (false: give up), the braces and
        /// commas around them are read here.
        public static func object(_ reader: inout Reader, _ field: (String, inout Reader) -> Bool) -> Bool {
            guard reader.take(UInt8(ascii: "{")) else { return false }
            if reader.take(UInt8(ascii: "}")) { return true }
            repeat {
                guard let key = reader.string(), reader.take(UInt8(ascii: ":")), field(key, &reader) else {
                    return false
                }
            } while reader.take(UInt8(ascii: ","))
            return reader.take(UInt8(ascii: "}"))
        }

        /// `[element, ...]`: nil when it is not next or an element is not read.
        public mutating func array<Element>(_ element: (inout Reader) -> Element?) -> [Element]? {
            guard self.take(UInt8(ascii: "[")) else { return nil }
            var elements: [Element] = []
            if self.take(UInt8(ascii: "]")) { return elements }
            repeat {
                guard let next = element(&self) else { return nil }
                elements.append(next)
            } while self.take(UInt8(ascii: ","))
            return self.take(UInt8(ascii: "]")) ? elements : nil
        }

        /// `true` or `false`: nil when neither is next.
        public mutating func bool() -> Bool? {
            self.skipSpace()
            for (word, value) in [("true", true), ("false", false)] {
                let utf8 = word.utf8
                guard self.index + utf8.count <= self.bytes.count,
                    zip(utf8, self.bytes[self.index..<self.index + utf8.count]).allSatisfy({ $0 == $1 })
                else { continue }
                self.index += utf8.count
                return value
            }
            return nil
        }

        /// Sets a field read once: false when it was set before (a repeated key) or not read.
        public static func once<Value>(_ slot: inout Value?, _ value: Value?) -> Bool {
            guard slot == nil, let value else { return false }
            slot = value
            return true
        }

        /// `{"question": answer, ...}`, every question once.
        mutating func answers() -> [String: Answer]? {
            var answers: [String: Answer] = [:]
            let read = Self.object(&self) { key, reader in
                guard let answer = reader.answer() else { return false }
                return answers.updateValue(answer, forKey: key) == nil
            }
            return read ? answers : nil
        }

        mutating func voteBody() -> VoteBody? {
            var voter: String??
            var device: String??
            var answers: [String: Answer]?
            let read = Self.object(&self) { key, reader in
                switch key {
                case "voter": Self.once(&voter, reader.optionalString())
                case "device": Self.once(&device, reader.optionalString())
                case "answers": Self.once(&answers, reader.answers())
                default: false
                }
            }
            guard read, let answers else { return nil }
            return VoteBody(voter: voter ?? nil, device: device ?? nil, answers: answers)
        }

        mutating func batchBallot() -> BatchBody.Ballot? {
            var poll: String?
            var voter: String??
            var device: String??
            var idempotencyKey: String??
            var answers: [String: Answer]?
            var castAt: Date??
            let read = Self.object(&self) { key, reader in
                switch key {
                case "poll": Self.once(&poll, reader.string())
                case "castAt": Self.once(&castAt, reader.optionalDate())
                case "voter": Self.once(&voter, reader.optionalString())
                case "device": Self.once(&device, reader.optionalString())
                case "idempotencyKey": Self.once(&idempotencyKey, reader.optionalString())
                case "answers": Self.once(&answers, reader.answers())
                default: false
                }
            }
            guard read, let poll, let answers else { return nil }
            return BatchBody.Ballot(
                poll: poll, voter: voter ?? nil, device: device ?? nil, idempotencyKey: idempotencyKey ?? nil,
                answers: answers, castAt: castAt ?? nil)
        }
    }
}
