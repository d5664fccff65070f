import CoreMetrics
import NIOCore

/// What a plain HTTP/1 connection's `ByteFrontHandler` and `AdmissionHandler` share: how many
/// requests went past the early refusal, and how many of those have been answered to their end.
/// Used on the connection's event loop only.
final class RequestLedger {
    var passed = 0
    var answered = 0

    /// Every request that went on has been answered: a refusal written now keeps the order.
    var isIdle: Bool { self.passed == self.answered }
}

/// The HTTP/1 front at the bytes, before the HTTP decoder: it refuses requests while their
/// admission pool is full, and answers plain results reads from bytes made once per version.
///
/// - A refusal costs a scan of the request's head and one prepared write (the response bytes
///   are encoded once per server), not the decoder, the HTTPTypes conversion and five handlers.
///   That matters most when it matters: a server offered twice what it can take spends most of
///   its reads on refusals, and every microsecond a refusal costs is taken from the requests it
///   admits.
/// - A plain `GET /v1/polls/{id}/results` (no query, no `Origin`, `If-None-Match`,
///   `Pollwire-Receipt`, `Accept-Encoding` or `Authorization`: what caches, CDNs and server-side
///   clients send) is answered with the head `FastPathHandler` would write, kept by the book per
///   snapshot (`TallyBook.derived`), the shared `Date` line and the snapshot's shared body: three
///   writes of shared bytes. Anything else goes on to `FastPathHandler` and the router.
///
/// It only answers what it fully understands, and only in order:
/// - a whole request (head and `Content-Length` body) within one read, HTTP/1.1, with a clean
///   head (token header names, no control bytes), no `Expect`, outside the routes never refused;
///   refusals for `GET`, `POST`, `PUT`, `PATCH` and `DELETE`;
/// - while every earlier request of the connection has been answered (`RequestLedger`);
/// - otherwise the bytes go on as they came, and `AdmissionHandler` decides as before.
///
/// It keeps track of where each request ends to know where the next one starts. Whatever it does
/// not follow (`Transfer-Encoding`, `Upgrade`, a head that spans reads, a malformed
/// `Content-Length`) makes it step aside for the rest of the connection: everything goes on to the
/// decoder, whose errors `HTTP1RequestGuard` answers.
final class ByteFrontHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let admission: Admission
    private let ledger: RequestLedger
    /// What plain results reads are answered from; nil answers none here.
    private let reads: FastPathHandler.Dependencies?
    /// Stepped aside for good: every byte goes on.
    private var passive = false
    /// Body bytes of the last request passed on that have not arrived yet.
    private var bodyRemaining = 0
    /// Whether this read cycle sent anything on (if not, its read-complete is not passed either:
    /// the handlers after us saw no read).
    private var forwarded = false
    private var wroteThisRead = false

    init(admission: Admission, ledger: RequestLedger, reads: FastPathHandler.Dependencies? = nil) {
        self.admission = admission
        self.ledger = ledger
        self.reads = reads
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.passive else {
            self.forward(data, context: context)
            return
        }
        var bytes = self.unwrapInboundIn(data)
        // The rest of a body passed on before.
        if self.bodyRemaining > 0 {
            let count = min(self.bodyRemaining, bytes.readableBytes)
            self.bodyRemaining -= count
            guard count < bytes.readableBytes else {
                self.forward(data, context: context)
                return
            }
            self.forward(bytes.readSlice(length: count)!, context: context)
        }
        // Requests that start here: refused while they may be, then the rest goes on whole.
        while bytes.readableBytes > 0 {
            guard let request = RequestFraming.parse(bytes) else {
                self.passive = true
                break
            }
            let whole = request.headLength + request.contentLength
            guard whole <= bytes.readableBytes, request.refusable, self.ledger.isIdle else {
                self.track(bytes, first: request)
                break
            }
            let pool = request.isOwner ? self.admission.owners : self.admission.voters
            if pool.isFull {
                pool.refused.increment()
                bytes.moveReaderIndex(forwardBy: whole)
                if self.write(self.admission.http1Refusal, closing: request.closes, context: context) { return }
                continue
            }
            guard request.isPlainRead, let reads = self.reads,
                let answer = bytes.withUnsafeReadableBytes({ reads.wireAnswer(target: request.target(in: $0)) })
            else {
                self.track(bytes, first: request)
                break
            }
            bytes.moveReaderIndex(forwardBy: whole)
            context.write(self.wrapOutboundOut(answer.head), promise: nil)
            context.write(self.wrapOutboundOut(HTTPDate.headLine), promise: nil)
            reads.metrics.record(
                route: FastPathHandler.routeTemplate, method: "GET", status: 200,
                nanoseconds: (NIODeadline.now() - answer.started).nanoseconds)
            if self.write(answer.body, closing: request.closes, context: context) { return }
        }
        guard bytes.readableBytes > 0 else { return }
        self.forward(bytes, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.wroteThisRead {
            self.wroteThisRead = false
            context.flush()
        }
        guard self.forwarded else { return }
        self.forwarded = false
        context.fireChannelReadComplete()
    }

    /// Writes `bytes`; with `closing`, flushes and closes the connection after them and steps
    /// aside (returns true: nothing more is read).
    private func write(_ bytes: ByteBuffer, closing: Bool, context: ChannelHandlerContext) -> Bool {
        self.wroteThisRead = true
        guard closing else {
            context.write(self.wrapOutboundOut(bytes), promise: nil)
            return false
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(bytes)).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
        self.passive = true
        return true
    }

    /// Counts the requests that start in `bytes` (all going on; the first already read as
    /// `first`), and how much of the last one's body is still to come.
    private func track(_ bytes: ByteBuffer, first: RequestFraming) {
        var rest = bytes
        var request = first
        while true {
            self.ledger.passed += 1
            let whole = request.headLength + request.contentLength
            guard whole < rest.readableBytes else {
                self.bodyRemaining = whole - rest.readableBytes
                return
            }
            rest.moveReaderIndex(forwardBy: whole)
            guard let next = RequestFraming.parse(rest) else {
                self.passive = true
                return
            }
            request = next
        }
    }

    private func forward(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        self.forwarded = true
        context.fireChannelRead(self.wrapInboundOut(bytes))
    }

    private func forward(_ data: NIOAny, context: ChannelHandlerContext) {
        self.forwarded = true
        context.fireChannelRead(data)
    }
}

/// Where one HTTP/1.1 request ends and what a refusal needs to know of it, read from its head's
/// bytes; nil when the head is not whole in the bytes given, or uses framing this does not follow.
struct RequestFraming: Equatable {
    /// Bytes up to and including the blank line.
    var headLength: Int
    var contentLength: Int
    /// Carries `Authorization`: counted in the owners' pool.
    var isOwner: Bool
    /// `Connection: close`: the connection ends after the answer.
    var closes: Bool
    /// May be answered with the prepared 503 (method, version, route and `Expect` allow it).
    var refusable: Bool
    /// A `GET` with no body and none of the headers that change a results answer (`Origin`,
    /// `If-None-Match`, `Pollwire-Receipt`, `Accept-Encoding`, `Authorization`): what
    /// `ByteFrontHandler` may answer from the bytes the book keeps.
    var isPlainRead: Bool
    /// Where the request target is, in the head's bytes.
    var targetStart: Int
    var targetEnd: Int

    /// The request target as text.
    func target(in bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[self.targetStart..<self.targetEnd]), as: UTF8.self)
    }

    /// Longest head looked at; a longer one is left to the decoder (which has its own limit).
    static let maxHead = 16 * 1024

    static func parse(_ buffer: ByteBuffer) -> RequestFraming? {
        buffer.withUnsafeReadableBytes { Self.parse(UnsafeRawBufferPointer(rebasing: $0[...])) }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) -> RequestFraming? {
        let limit = min(bytes.count, Self.maxHead)
        // The request line: METHOD SP target SP HTTP/1.x CRLF
        guard let lineEnd = Self.lineEnd(bytes, from: 0, limit: limit) else { return nil }
        guard let methodEnd = Self.index(of: UInt8(ascii: " "), in: bytes, from: 0, to: lineEnd),
            let targetEnd = Self.index(of: UInt8(ascii: " "), in: bytes, from: methodEnd + 1, to: lineEnd)
        else { return nil }
        let refusableMethod = Self.isRefusableMethod(bytes, count: methodEnd)
        let isHTTP11 = Self.equals(bytes, from: targetEnd + 1, to: lineEnd, "HTTP/1.1")
        let neverRefused = Self.isNeverRefused(bytes, from: methodEnd + 1, to: targetEnd)
        // The target is visible ASCII (the decoder refuses the rest).
        var clean = targetEnd > methodEnd + 1
        for index in (methodEnd + 1)..<targetEnd where !(0x21...0x7E).contains(bytes[index]) { clean = false }
        var framing = RequestFraming(
            headLength: 0, contentLength: 0, isOwner: false, closes: false,
            refusable: refusableMethod && isHTTP11 && !neverRefused,
            isPlainRead: isHTTP11 && Self.equals(bytes, from: 0, to: methodEnd, "GET"),
            targetStart: methodEnd + 1, targetEnd: targetEnd)
        var sawLength = false
        var start = lineEnd + 2
        while true {
            guard let end = Self.lineEnd(bytes, from: start, limit: limit) else { return nil }
            if end == start {
                framing.headLength = end + 2
                if !clean || framing.contentLength > 0 { framing.isPlainRead = false }
                if !clean { framing.refusable = false }
                return framing
            }
            guard let colon = Self.index(of: UInt8(ascii: ":"), in: bytes, from: start, to: end) else { return nil }
            // A token for a name, no control bytes but tab in a value (as the decoder asks).
            if colon == start { clean = false }
            for index in start..<colon where !Self.isTokenByte(bytes[index]) { clean = false }
            for index in (colon + 1)..<end where bytes[index] < 0x20 && bytes[index] != 0x09 || bytes[index] == 0x7F {
                clean = false
            }
            var valueStart = colon + 1
            while valueStart < end, bytes[valueStart] == UInt8(ascii: " ") || bytes[valueStart] == UInt8(ascii: "\t") {
                valueStart += 1
            }
            var valueEnd = end
            while valueEnd > valueStart,
                bytes[valueEnd - 1] == UInt8(ascii: " ") || bytes[valueEnd - 1] == UInt8(ascii: "\t")
            {
                valueEnd -= 1
            }
            switch Self.header(bytes, from: start, to: colon) {
            case .contentLength:
                guard !sawLength, valueEnd > valueStart, valueEnd - valueStart <= 12 else { return nil }
                var length = 0
                for index in valueStart..<valueEnd {
                    let digit = bytes[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    length = length * 10 + Int(digit)
                }
                framing.contentLength = length
                sawLength = true
            case .transferEncoding, .upgrade:
                return nil
            case .authorization:
                framing.isOwner = true
                framing.isPlainRead = false
            case .varying:
                framing.isPlainRead = false
            case .connection:
                framing.closes = Self.contains(bytes, from: valueStart, to: valueEnd, "close")
            case .expect:
                framing.refusable = false
                framing.isPlainRead = false
            case .other:
                break
            }
            start = end + 2
        }
    }

    private enum Header {
        case contentLength, transferEncoding, upgrade, authorization, connection, expect
        /// A header that changes a results answer.
        case varying
        case other
    }

    private static let names: [(Header, [UInt8])] = [
        (.contentLength, Array("content-length".utf8)), (.transferEncoding, Array("transfer-encoding".utf8)),
        (.upgrade, Array("upgrade".utf8)), (.authorization, Array("authorization".utf8)),
        (.connection, Array("connection".utf8)), (.expect, Array("expect".utf8)),
        (.varying, Array("origin".utf8)), (.varying, Array("if-none-match".utf8)),
        (.varying, Array("pollwire-receipt".utf8)), (.varying, Array("accept-encoding".utf8)),
        (.varying, Array("if-modified-since".utf8)), (.varying, Array("range".utf8)),
    ]

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    private static func header(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Header {
        for (header, name) in Self.names where name.count == end - start {
            var same = true
            for offset in 0..<name.count where bytes[start + offset] | 0x20 != name[offset] {
                same = false
                break
            }
            if same { return header }
        }
        return .other
    }

    /// Where the line starting at `from` ends (its CR), if its CRLF is within `limit`.
    private static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int, limit: Int) -> Int? {
        var index = from
        while index + 1 < limit {
            if bytes[index] == UInt8(ascii: "\r") {
                return bytes[index + 1] == UInt8(ascii: "\n") ? index : nil
            }
            if bytes[index] == UInt8(ascii: "\n") { return nil }
            index += 1
        }
        return nil
    }

    private static func index(of byte: UInt8, in bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        var index = from
        while index < to {
            if bytes[index] == byte { return index }
            index += 1
        }
        return nil
    }

    private static func equals(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int, _ text: StaticString) -> Bool {
        guard to - from == text.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        for offset in 0..<expected.count where bytes[from + offset] != expected[offset] { return false }
        return true
    }

    /// Whether `text` (lower case) occurs in the bytes, ignoring case.
    private static func contains(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int, _ text: StaticString) -> Bool {
        let needle = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        guard to - from >= needle.count else { return false }
        outer: for start in from...(to - needle.count) {
            for offset in 0..<needle.count where bytes[start + offset] | 0x20 != needle[offset] { continue outer }
            return true
        }
        return false
    }

    private static func isRefusableMethod(_ bytes: UnsafeRawBufferPointer, count: Int) -> Bool {
        Self.equals(bytes, from: 0, to: count, "GET") || Self.equals(bytes, from: 0, to: count, "POST")
            || Self.equals(bytes, from: 0, to: count, "PUT") || Self.equals(bytes, from: 0, to: count, "PATCH")
            || Self.equals(bytes, from: 0, to: count, "DELETE")
    }

    /// Health, readiness and metrics: never refused (`Route.operations`, as `Admission.pool(for:)`).
    private static func isNeverRefused(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
        let target = bytes[from..<to]
        return Route.isOperations(path: target[..<(target.firstIndex(of: UInt8(ascii: "?")) ?? to)])
    }
}
