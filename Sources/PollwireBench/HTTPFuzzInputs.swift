import PollwireCore

/// Raw HTTP/1.1 inputs for `pollwire-bench fuzz`, made from a seed: the same seed and index give
/// the same bytes, so a finding can be replayed (`--seed S --first N --inputs 1`).
///
/// Half start from well-formed requests of every route shape (votes, batches, results, live,
/// management, device tokens, HEAD, OPTIONS, chunked bodies, two pipelined requests) and are
/// mutated: bytes flipped, inserted (NUL, 0xFF, CR, LF, space, tab, `:`), deleted or repeated,
/// the input cut short, a header line repeated or blown up to 100 KB, Content-Length and
/// Transfer-Encoding values bent. A quarter are left well-formed, the rest are random bytes.
struct HTTPFuzzInputs {
    let seed: UInt64

    static let poll = "FUZZpollFUZZpoll"
    static let vote = #"{"voter": "f1", "answers": {"q1": ["a"]}}"#
    static let templates: [String] = [
        "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"\(poll)-1\"\r\nAccept-Encoding: gzip\r\n\r\n",
        "HEAD /v1/polls/\(poll)/results HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/results?polls=\(poll),b,c HTTP/1.1\r\nHost: x\r\n\r\n",
        Self.request("POST /v1/polls/\(poll)/votes", ["Content-Type: application/json"], body: Self.vote),
        "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n"
            + Self.chunked([String(Self.vote.prefix(20)), String(Self.vote.dropFirst(20))]),
        Self.request(
            "POST /v1/votes:batch", ["Authorization: Bearer pw_nope", "Content-Type: application/json"],
            body: #"{"ballots": [{"poll": "\#(poll)", "answers": {"q1": ["a"]}}]}"#),
        "GET /v1/polls/\(poll)/live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 3-h\r\n\r\n",
        "GET /v1/live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        Self.request("POST /v1/device-tokens", [], body: ""),
        "OPTIONS /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
            + "Access-Control-Request-Method: POST\r\n\r\n",
        "GET /v1/polls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pw_nope\r\n\r\n",
        Self.request(
            "PATCH /v1/polls/\(poll)", ["Authorization: Bearer pw_nope", "Content-Type: application/json"], body: "{}"),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/polls/\(poll) HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /embed/pollwire.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: deflate, gzip;q=0\r\n\r\n",
    ]

    static func request(_ line: String, _ headers: [String], body: String) -> String {
        let head = ([line + " HTTP/1.1", "Host: x"] + headers + ["Content-Length: \(body.utf8.count)"])
            .joined(separator: "\r\n")
        return head + "\r\n\r\n" + body
    }

    static func chunked(_ parts: [String]) -> String {
        parts.map { String($0.utf8.count, radix: 16) + "\r\n" + $0 + "\r\n" }.joined() + "0\r\n\r\n"
    }

    static let specials: [UInt8] = [0, 0xFF, 0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x22, 0x25, 0x7F, 0x80]
    static let headerValues = ["-1", "0x10", "99999999999999999999", "1, 2", " 5", "chunked, gzip", "identity", ""]

    /// Input number `index`.
    func input(_ index: Int) -> [UInt8] {
        var random = SplitMix64(seed: self.seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let kind = random.next() % 4
        if kind == 3 {
            return (0..<Int(random.next() % 512)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        var bytes = Array(Self.templates[Int(random.next() % UInt64(Self.templates.count))].utf8)
        if kind == 2 { return bytes }
        for _ in 0..<(1 + random.next() % 4) { Self.mutate(&bytes, &random) }
        return bytes
    }

    static func mutate(_ bytes: inout [UInt8], _ random: inout SplitMix64) {
        guard !bytes.isEmpty else { return }
        let at = Int(random.next() % UInt64(bytes.count))
        switch random.next() % 9 {
        case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << (random.next() % 8))
        case 1: bytes.insert(Self.specials[Int(random.next() % UInt64(Self.specials.count))], at: at)
        case 2: bytes.remove(at: at)
        case 3: bytes.removeSubrange(at...)
        case 4:
            let length = min(Int(random.next() % 64), bytes.count - at)
            bytes.insert(contentsOf: bytes[at..<at + length], at: at)
        case 5:
            // A header line repeated, or blown up past the head limit.
            let line = random.next() % 8 == 0 ? "X-Big: \(String(repeating: "a", count: 100_000))\r\n" : "X-Dup: 1\r\n"
            if let end = Self.firstLineEnd(bytes) { bytes.insert(contentsOf: Array(line.utf8), at: end) }
        case 6, 7:
            let name = random.next() % 2 == 0 ? "Content-Length" : "Transfer-Encoding"
            let value = Self.headerValues[Int(random.next() % UInt64(Self.headerValues.count))]
            if let end = Self.firstLineEnd(bytes) {
                bytes.insert(contentsOf: Array("\(name): \(value)\r\n".utf8), at: end)
            }
        default: bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
        }
    }

    /// Just after the request line's CRLF.
    static func firstLineEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count > 1 else { return nil }
        for index in 1..<bytes.count where bytes[index - 1] == 0x0D && bytes[index] == 0x0A { return index + 1 }
        return nil
    }
}
