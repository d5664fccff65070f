import CompressNIO
import Foundation
import Histogram
import NIOCore
import NIOPosix

/// Which live transport a viewer uses.
enum Transport: String, Sendable, CaseIterable {
    case ws
    /// WebSocket offering permessage-deflate (the server must have compression.webSocketDeflate on).
    case wsDeflate = "ws-deflate"
    /// WebSocket asking for compact frames (`GET /v1/live?format=counts`).
    case wsCounts = "ws-counts"
    case sse
    /// SSE asking for the poll's 1 s `window` events too (`?windows=1s`): window end -> receipt.
    case sseWindows = "sse-windows"
    /// Socket.IO (Engine.IO v4 over WebSocket), for the Socket.IO peer.
    case socketio
}

/// Counters and the latency histogram of the viewers on ONE event loop: touched only on that
/// loop's thread, merged at the end.
final class LoopStats: @unchecked Sendable {
    var ready = 0
    var frames = 0
    var closed = 0
    /// Vote acknowledged -> viewer received a version that includes it, nanoseconds.
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    /// Window end (wall clock) -> viewer received its `window` event, nanoseconds.
    var windowLatency = Histogram<UInt64>(
        highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
}

/// The stats of every event loop of a group, found by the loop a channel runs on.
final class ViewerStats: Sendable {
    private let byLoop: [ObjectIdentifier: LoopStats]

    init(group: MultiThreadedEventLoopGroup) {
        var byLoop: [ObjectIdentifier: LoopStats] = [:]
        for loop in group.makeIterator() { byLoop[ObjectIdentifier(loop)] = LoopStats() }
        self.byLoop = byLoop
    }

    func on(_ loop: any EventLoop) -> LoopStats { self.byLoop[ObjectIdentifier(loop)]! }

    /// Totals, read on each loop's own thread.
    func totals(
        group: MultiThreadedEventLoopGroup
    ) async throws -> (
        ready: Int, frames: Int, closed: Int, latency: Histogram<UInt64>, windowLatency: Histogram<UInt64>
    ) {
        var ready = 0
        var frames = 0
        var closed = 0
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var windowLatency = Histogram<UInt64>(
            highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for loop in group.makeIterator() {
            let stats = self.on(loop)
            let (r, f, c, h, w) = try await loop.submit {
                (stats.ready, stats.frames, stats.closed, stats.latency, stats.windowLatency)
            }.get()
            ready += r
            frames += f
            closed += c
            latency.add(h)
            windowLatency.add(w)
        }
        return (ready, frames, closed, latency, windowLatency)
    }

    func resetLatency(group: MultiThreadedEventLoopGroup) async throws {
        for loop in group.makeIterator() {
            let stats = self.on(loop)
            try await loop.submit {
                stats.latency.reset()
                stats.windowLatency.reset()
                stats.frames = 0
            }.get()
        }
    }
}

/// One live viewer on a raw socket: a WebSocket (`GET /v1/live`, subscribe message) or an SSE
/// stream (`GET /v1/polls/{id}/live`). Parses only what it needs: each update's version.
final class LiveViewerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let transport: Transport
    let pollID: String
    let ackTimes: AckTimes
    let stats: ViewerStats
    private var handshaken = false
    private var buffer = ByteBuffer()
    private var lastVersion = -1
    /// The request that opened the stream, sent again after a 307 (as EventSource follows it).
    private var request = ""
    private var redirects = 0
    /// This channel's loop's stats, found once.
    private var loopStats: LoopStats?

    init(transport: Transport, pollID: String, ackTimes: AckTimes, stats: ViewerStats) {
        self.transport = transport
        self.pollID = pollID
        self.ackTimes = ackTimes
        self.stats = stats
    }

    func channelActive(context: ChannelHandlerContext) {
        self.loopStats = self.stats.on(context.eventLoop)
        let request: String
        switch self.transport {
        case .ws, .wsDeflate, .wsCounts:
            let deflate = self.transport == .wsDeflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : ""
            let query = self.transport == .wsCounts ? "?format=counts" : ""
            request =
                "GET /v1/live\(query) HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(deflate)\r\n"
        case .sse, .sseWindows:
            let query = self.transport == .sseWindows ? "?windows=1s" : ""
            request =
                "GET /v1/polls/\(self.pollID)/live\(query) HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        case .socketio:
            request =
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        }
        self.request = request
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stats.on(context.eventLoop).closed += 1
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        if self.buffer.readableBytes == 0 {
            self.buffer = incoming  // the common case: no partial frame left over, no copy
        } else {
            self.buffer.writeBuffer(&incoming)
        }
        if !self.handshaken {
            guard let end = self.buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            let headLength = end.upperBound - self.buffer.readableBytesView.startIndex
            let head = self.buffer.readString(length: headLength) ?? ""
            // A node that had not heard of a poll made on another node a moment ago looks it up
            // and sends the stream back to itself: ask again on the same connection, once.
            if head.hasPrefix("HTTP/1.1 307"), self.redirects == 0, head.lowercased().contains("content-length: 0") {
                self.redirects += 1
                self.buffer.clear()
                context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: self.request)), promise: nil)
                return
            }
            guard head.hasPrefix("HTTP/1.1 101") || head.hasPrefix("HTTP/1.1 200") else {
                context.close(promise: nil)
                return
            }
            self.handshaken = true
            if self.transport == .ws || self.transport == .wsDeflate || self.transport == .wsCounts {
                self.send(
                    opcode: 0x1, payload: "{\"type\":\"subscribe\",\"polls\":[\"\(self.pollID)\"]}", context: context)
            }
        }
        switch self.transport {
        case .ws, .wsDeflate, .wsCounts, .socketio: self.readFrames(context: context)
        case .sse: self.readEvents(context: context)
        case .sseWindows: self.readWindowEvents(context: context)
        }
        self.buffer.discardReadBytes()
    }

    /// WebSocket frames from the server (never masked).
    private func readFrames(context: ChannelHandlerContext) {
        while self.buffer.readableBytes >= 2 {
            let start = self.buffer.readerIndex
            let first = self.buffer.getInteger(at: start, as: UInt8.self)!
            let second = self.buffer.getInteger(at: start + 1, as: UInt8.self)!
            var length = Int(second & 0x7F)
            var header = 2
            if length == 126 {
                guard self.buffer.readableBytes >= 4 else { return }
                length = Int(self.buffer.getInteger(at: start + 2, as: UInt16.self)!)
                header = 4
            } else if length == 127 {
                guard self.buffer.readableBytes >= 10 else { return }
                length = Int(self.buffer.getInteger(at: start + 2, as: UInt64.self)!)
                header = 10
            }
            guard self.buffer.readableBytes >= header + length else { return }
            self.buffer.moveReaderIndex(forwardBy: header)
            let payload = self.buffer.readSlice(length: length)!
            switch first & 0x0F {
            case 0x1 where first & 0x40 != 0:
                // Compressed (RSV1): a raw deflate block without its sync-flush tail.
                var compressed = payload
                compressed.writeBytes([0x00, 0x00, 0xFF, 0xFF])
                if let inflater = try? ZlibDecompressor(algorithm: .deflate) {
                    var inflated = context.channel.allocator.buffer(capacity: 1 << 16)
                    if (try? inflater.inflate(from: &compressed, to: &inflated)) != nil {
                        self.received(inflated, context: context)
                    }
                }
            case 0x1 where self.transport == .socketio: self.socketIO(payload, context: context)
            case 0x1: self.received(payload, context: context)
            case 0x9: self.send(opcode: 0xA, payload: String(buffer: payload), context: context)
            case 0x8: context.close(promise: nil)
            default: break
            }
        }
    }

    /// Engine.IO / Socket.IO packets: open ("0{...}") -> connect ("40"); connected ("40{...}") ->
    /// subscribe; ping ("2") -> pong ("3"); events ("42[\"results\",{...}]") -> the version.
    private func socketIO(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        let view = payload.readableBytesView
        guard let first = view.first else { return }
        switch first {
        case UInt8(ascii: "0"):
            self.send(opcode: 0x1, payload: "40", context: context)
        case UInt8(ascii: "2"):
            self.send(opcode: 0x1, payload: "3", context: context)
        case UInt8(ascii: "4"):
            guard view.count >= 2 else { return }
            let second = view[view.index(after: view.startIndex)]
            if second == UInt8(ascii: "0") {
                self.send(
                    opcode: 0x1, payload: "42[\"subscribe\",{\"polls\":[\"\(self.pollID)\"]}]", context: context)
            } else if second == UInt8(ascii: "2"), view.last == UInt8(ascii: "]") {
                // 42["results",{...,"version":N}]: drop the closing bracket, read as results JSON.
                self.received(
                    payload.getSlice(at: payload.readerIndex, length: payload.readableBytes - 1)!, context: context)
            }
        default:
            break
        }
    }

    /// SSE: each `id: <version>` line that starts an event. Scanned over raw bytes: the
    /// generic `firstRange(of:)` cost the load generator more than the server spent sending.
    private func readEvents(context: ChannelHandlerContext) {
        while true {
            let (id, consumed) = self.buffer.withUnsafeReadableBytes(Self.eventID)
            self.buffer.moveReaderIndex(forwardBy: consumed)
            guard let id else { return }
            self.seen(version: id, context: context)
        }
    }

    /// SSE with `window` events: each whole event (up to its blank line), scanned over raw bytes
    /// (as `readEvents` does): a results event's version, a window event's `end`.
    private func readWindowEvents(context: ChannelHandlerContext) {
        while true {
            let (event, consumed) = self.buffer.withUnsafeReadableBytes(Self.windowEvent)
            guard consumed > 0 else { return }
            self.buffer.moveReaderIndex(forwardBy: consumed)
            switch event {
            case .results(let version): self.seen(version: version, context: context)
            case .window(let end):
                let late = Date().timeIntervalSince1970 - Double(end)
                let stats = self.loopStats ?? self.stats.on(context.eventLoop)
                _ = stats.windowLatency.record(UInt64(max(0, late) * 1e9))
            case .other: break
            }
        }
    }

    enum StreamEvent: Equatable {
        case results(Int)
        /// A window event: its end, seconds since 1970.
        case window(Int64)
        case other
    }

    /// The first whole event in `bytes` (up to a blank line): what it is, and the bytes it took
    /// (0: no whole event yet). Chunked framing (size lines) sits between events, so the markers
    /// are searched for inside each one.
    static func windowEvent(_ bytes: UnsafeRawBufferPointer) -> (StreamEvent, Int) {
        guard let base = bytes.baseAddress, let blank = Self.find(Self.blankLine, in: base, count: bytes.count) else {
            return (.other, 0)
        }
        let length = blank + 2
        let event = UnsafeRawBufferPointer(start: base, count: length)
        func find(_ marker: [UInt8]) -> Int? { Self.find(marker, in: base, count: length) }
        if let id = find(Self.idMarker) {
            var index = id + 4
            var version = 0
            while index < length, event[index] >= 48, event[index] <= 57 {
                version = version * 10 + Int(event[index] - 48)
                index += 1
            }
            return (.results(version), length)
        }
        if find(Self.windowMarker) != nil, let end = find(Self.endMarker), end + 7 + 20 <= length {
            // "YYYY-MM-DDTHH:MM:SSZ": whole seconds, UTC.
            func number(_ from: Int, _ digits: Int) -> Int64 {
                (0..<digits).reduce(0) { $0 * 10 + Int64(event[from + $1] - 48) }
            }
            let at = end + 7
            let (year, month, day) = (number(at, 4), number(at + 5, 2), number(at + 8, 2))
            let seconds = number(at + 11, 2) * 3600 + number(at + 14, 2) * 60 + number(at + 17, 2)
            return (.window(Self.days(year: year, month: month, day: day) * 86_400 + seconds), length)
        }
        return (.other, length)
    }

    static let blankLine = Array("\n\n".utf8)
    static let idMarker = Array("id: ".utf8)
    static let windowMarker = Array("event: window".utf8)
    static let endMarker = Array("\"end\":\"".utf8)

    /// Where `needle` first starts in the `count` bytes at `base` (memchr for its first byte).
    static func find(_ needle: [UInt8], in base: UnsafeRawPointer, count: Int) -> Int? {
        var index = 0
        while index + needle.count <= count,
            let found = memchr(base + index, Int32(needle[0]), count - index - needle.count + 1)
        {
            let at = base.distance(to: UnsafeRawPointer(found))
            if (1..<needle.count).allSatisfy({ base.load(fromByteOffset: at + $0, as: UInt8.self) == needle[$0] }) {
                return at
            }
            index = at + 1
        }
        return nil
    }

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The first complete `id: <digits>...\n` line in `bytes`: its number (the digits up to the
    /// first other byte: `42` or `42-h`) and how many bytes up to and including its newline; or
    /// no number and how many bytes can go (all but a partial line or marker at the end).
    static func eventID(_ bytes: UnsafeRawBufferPointer) -> (id: Int?, consumed: Int) {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return (nil, 0) }
        var index = 0
        while index < count, let found = memchr(base + index, Int32(UInt8(ascii: "i")), count - index) {
            let at = base.distance(to: UnsafeRawPointer(found))
            guard at + 4 <= count else { return (nil, at) }
            if bytes[at + 1] == UInt8(ascii: "d"), bytes[at + 2] == UInt8(ascii: ":"),
                bytes[at + 3] == UInt8(ascii: " ")
            {
                var end = at + 4
                var id = 0
                var digits = true
                while end < count, bytes[end] != UInt8(ascii: "\n") {
                    let byte = bytes[end]
                    if digits, byte >= 48, byte <= 57 { id = id * 10 + Int(byte - 48) } else { digits = false }
                    end += 1
                }
                guard end < count else { return (nil, at) }
                return (id, end + 1)
            }
            index = at + 1
        }
        return (nil, count)
    }

    /// Results JSON has sorted keys, so it ends with `"version":<digits>}`: read the digits
    /// backwards from the end (constant time; other messages end otherwise and are skipped).
    private func received(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        let view = payload.readableBytesView
        guard view.last == UInt8(ascii: "}") else { return }
        var index = view.index(before: view.endIndex)
        var version = 0
        var scale = 1
        while index > view.startIndex {
            index = view.index(before: index)
            let byte = view[index]
            guard byte >= 48, byte <= 57 else {
                guard byte == UInt8(ascii: ":"), scale > 1 else { return }
                break
            }
            version += Int(byte - 48) * scale
            scale *= 10
        }
        self.seen(version: version, context: context)
    }

    private func seen(version: Int, context: ChannelHandlerContext) {
        let stats = self.loopStats ?? self.stats.on(context.eventLoop)
        if self.lastVersion < 0 {
            stats.ready += 1
            self.lastVersion = version
            return
        }
        guard version > self.lastVersion else { return }
        stats.frames += 1
        if let acknowledged = self.ackTimes.earliest(in: (self.lastVersion + 1)...version) {
            let now = monotonicNanos()
            _ = stats.latency.record(now > acknowledged ? now - acknowledged : 0)
        }
        self.lastVersion = version
    }

    /// A masked client frame (mask key zero: the payload goes as is).
    private func send(opcode: UInt8, payload: String, context: ChannelHandlerContext) {
        let bytes = Array(payload.utf8)
        var frame = context.channel.allocator.buffer(capacity: bytes.count + 8)
        frame.writeInteger(0x80 | opcode)
        if bytes.count < 126 {
            frame.writeInteger(UInt8(0x80 | bytes.count))
        } else {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(bytes.count))
        }
        frame.writeInteger(UInt32(0))
        frame.writeBytes(bytes)
        context.writeAndFlush(NIOAny(frame), promise: nil)
    }
}

/// Opens `count` viewers, spread over the loopback source addresses `sources`.
func connectViewers(
    count: Int, transport: Transport, host: String, port: Int, pollID: String, sources: [String],
    group: MultiThreadedEventLoopGroup, ackTimes: AckTimes, stats: ViewerStats
) async throws -> [any Channel] {
    try await connectViewers(
        count: count, transport: transport, host: host, port: port, polls: [(pollID, ackTimes)], sources: sources,
        group: group, stats: stats)
}

/// Viewers spread over `polls` in turn: viewer i watches poll i % polls.count.
func connectViewers(
    count: Int, transport: Transport, host: String, port: Int, polls: [(id: String, ackTimes: AckTimes)],
    sources: [String], group: MultiThreadedEventLoopGroup, stats: ViewerStats
) async throws -> [any Channel] {
    var channels: [any Channel] = []
    channels.reserveCapacity(count)
    var failures = 0
    for index in 0..<count {
        let source = sources[index % sources.count]
        let (pollID, ackTimes) = polls[index % polls.count]
        let bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        LiveViewerHandler(transport: transport, pollID: pollID, ackTimes: ackTimes, stats: stats))
                }
            }
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
        do {
            channels.append(try await bootstrap.connect(host: host, port: port).get())
        } catch {
            failures += 1
            if failures > count / 100 + 10 { throw error }
        }
        if index % 1000 == 999 { print("  connected \(index + 1) viewers", terminator: "\r") }
    }
    print("")
    return channels
}
