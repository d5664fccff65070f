import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1

/// permessage-deflate (RFC 7692) for the live WebSocket, without per-connection state:
/// both directions are negotiated with no context takeover, so every message is compressed on
/// its own. The server then compresses each results frame once and every viewer that asked for
/// compression shares those bytes (`LiveFrame.deflated`); a client message is inflated with a
/// fresh inflater and nothing is kept between messages.
enum PerMessageDeflate {
    static let name = "permessage-deflate"
    /// What the 101 answers when it accepts an offer.
    static let accepted = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    /// Whether the request's `Sec-WebSocket-Extensions` offers permessage-deflate in a form this
    /// server can accept: any offer, unless it limits the server's window below 32 KB.
    static func isOffered(_ headers: HTTPHeaders) -> Bool {
        for value in headers[canonicalForm: "sec-websocket-extensions"] {
            let parameters = value.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parameters.first?.lowercased() == Self.name else { continue }
            let limited = parameters.dropFirst().contains { parameter in
                let pair = parameter.split(separator: "=", maxSplits: 1)
                guard pair.first?.lowercased() == "server_max_window_bits" else { return false }
                let bits = pair.count == 2 ? Int(pair[1].trimmingCharacters(in: .init(charactersIn: "\" "))) : nil
                return (bits ?? 15) < 15
            }
            if !limited { return true }
        }
        return false
    }

    /// One message's payload, compressed on its own (raw deflate, the sync-flush tail removed).
    static func compress(_ payload: ByteBuffer) throws -> ByteBuffer {
        let compressor = try ZlibCompressor(
            algorithm: .deflate, configuration: ZlibConfiguration(windowSize: 15, compressionLevel: 6, memoryLevel: 8))
        var input = payload
        var output = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: .sync)
        if output.readableBytes >= 4, output.readableBytesView.suffix(4).elementsEqual(Self.tail) {
            output.moveWriterIndex(to: output.writerIndex - 4)
        }
        return output
    }

    /// A compressed client message, inflated; throws past `limit` bytes (a deflate bomb).
    static func inflate(_ payload: ByteBuffer, limit: Int) throws -> ByteBuffer {
        let inflater = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        var input = payload
        input.writeBytes(Self.tail)
        var output = ByteBufferAllocator().buffer(capacity: limit + 1)
        try inflater.inflate(from: &input, to: &output)
        guard output.readableBytes <= limit, input.readableBytes == 0 else { throw CompressNIOError.bufferOverflow }
        return output
    }
}
