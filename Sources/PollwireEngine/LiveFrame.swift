public import NIOCore
import Synchronization

/// One results update as every live transport sends it, built once per poll, version and
/// variant per publish tick, and shared by every subscriber (no per-subscriber encode or copy).
public struct LiveFrame: Sendable {
    /// What a frame carries: a poll's results, or one of its timeline's windows (`WindowFeed`).
    public enum Kind: Sendable, Hashable {
        case results
        case window
    }

    public let kind: Kind
    public let pollID: String
    public let version: Int64
    /// True for the redacted variant (only the number of ballots).
    public let hidden: Bool
    /// The snapshot JSON: the same bytes as `GET /results`, and a WebSocket message.
    public let json: ByteBuffer
    /// The Server-Sent Event id: what the viewer saw, as the results ETag names it: the version,
    /// and `-h` when the results were hidden (`42-h`). A viewer that resumes with the id of
    /// hidden results gets the results once a reveal or a close shows them, at the same version.
    public let eventID: String
    /// The same JSON as one Server-Sent Event: `id: <eventID>`, `event: results`, `data: ...`.
    public let event: ByteBuffer
    /// The same JSON as one whole WebSocket text frame, header included: a server's frames are
    /// not masked, so every viewer gets the very same bytes.
    public let webSocketFrame: ByteBuffer
    /// The compact form (`format=counts`: version and counts) as one whole WebSocket text frame.
    public let compactWebSocketFrame: ByteBuffer
    /// When the commit that made this version was applied, for commit -> write latency.
    public let committedAt: ContinuousClock.Instant
    /// The JSON compressed for WebSockets that negotiated permessage-deflate, made by the first
    /// such viewer and shared by the rest.
    public let deflated = SharedBytes()

    public init(snapshot: Snapshot, committedAt: ContinuousClock.Instant) {
        self.kind = .results
        self.pollID = snapshot.pollID
        self.version = snapshot.version
        self.hidden = snapshot.hidden
        self.json = snapshot.body
        self.eventID = snapshot.hidden ? "\(snapshot.version)-h" : String(snapshot.version)
        var event = ByteBuffer()
        event.reserveCapacity(snapshot.body.readableBytes + 48)
        event.writeString("id: \(self.eventID)\nevent: results\ndata: ")
        event.writeImmutableBuffer(snapshot.body)
        event.writeString("\n\n")
        self.event = event
        self.webSocketFrame = Self.webSocketFrame(snapshot.body)
        self.compactWebSocketFrame = Self.webSocketFrame(snapshot.compact)
        self.committedAt = committedAt
    }
}

extension LiveFrame {
    /// A `window` event (`WindowFeed`): `json` as `event: window` (no id: resuming is for
    /// results) and as a WebSocket message. `sequence` tells one window frame of the poll from
    /// the next; `endedAt` is when the window ended, for end -> write latency.
    public init(
        window json: ByteBuffer, pollID: String, sequence: Int64, hidden: Bool, endedAt: ContinuousClock.Instant
    ) {
        self.kind = .window
        self.pollID = pollID
        self.version = sequence
        self.hidden = hidden
        self.json = json
        self.eventID = ""
        var event = ByteBuffer()
        event.reserveCapacity(json.readableBytes + 24)
        event.writeString("event: window\ndata: ")
        event.writeImmutableBuffer(json)
        event.writeString("\n\n")
        self.event = event
        self.webSocketFrame = Self.webSocketFrame(json)
        self.compactWebSocketFrame = self.webSocketFrame
        self.committedAt = endedAt
    }

    /// RFC 6455 §5.2: FIN + text opcode, then the payload length (7 bits, or 126 + 16 bits, or
    /// 127 + 64 bits), no mask, then the payload.
    static func webSocketFrame(_ payload: ByteBuffer) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(payload.readableBytes + 10)
        frame.writeInteger(UInt8(0x81))
        let length = payload.readableBytes
        if length < 126 {
            frame.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        frame.writeImmutableBuffer(payload)
        return frame
    }
}

/// Bytes derived from a frame once, on first use, then shared (any thread).
public final class SharedBytes: Sendable {
    private let bytes = Mutex<ByteBuffer?>(nil)

    public init() {}

    public func value(orMake make: () throws -> ByteBuffer) rethrows -> ByteBuffer {
        try self.bytes.withLock { bytes in
            if let bytes { return bytes }
            let made = try make()
            bytes = made
            return made
        }
    }
}
