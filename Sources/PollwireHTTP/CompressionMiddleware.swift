import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// gzip or deflate (zlib) for JSON, NDJSON and CSV bodies, by the request's `Accept-Encoding`:
/// never for bodies under `minimumBytes`, never twice. Streamed bodies (exports) are compressed
/// page by page as they are written, each page flushed, so a client sees rows as they come.
///
/// Every compressible response says `Vary: Accept-Encoding`, so a shared cache keeps the
/// variants apart; results ETags are weak, so both variants revalidate with the same tag.
struct CompressionMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    enum Coding: String {
        case gzip
        case deflate

        var algorithm: ZlibAlgorithm { self == .gzip ? .gzip : .zlib }
    }

    let minimumBytes: Int

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var response = try await next(request, context)
        guard self.minimumBytes > 0, Self.isCompressible(response) else { return response }
        response.headers.append(HTTPField(name: .vary, value: "Accept-Encoding"))
        let length = response.body.contentLength
        guard length.map({ $0 >= self.minimumBytes }) ?? true,
            let coding = Self.preferred(request.headers[values: .acceptEncoding])
        else { return response }
        response.headers[.contentEncoding] = coding.rawValue
        response.headers[.contentLength] = nil
        let body = response.body
        let configuration = Self.configuration(forLength: length)
        response.body = ResponseBody { writer in
            let compressing = try CompressingWriter(base: writer, coding: coding, configuration: configuration)
            try await body.write(compressing)
        }
        return response
    }

    static func isCompressible(_ response: Response) -> Bool {
        guard response.headers[.contentEncoding] == nil, response.status != .notModified,
            response.status != .noContent, let type = response.headers[.contentType]
        else { return false }
        return type.hasPrefix("application/json") || type.hasPrefix("text/csv")
            || type.hasPrefix("application/x-ndjson")
    }

    /// gzip, else deflate, among the codings the client accepts (`q=0` refuses one).
    static func preferred(_ values: [String]) -> Coding? {
        var accepted: Set<String> = []
        var refused: Set<String> = []
        for value in values {
            for item in value.split(separator: ",") {
                let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                guard let name = parts.first, !name.isEmpty else { continue }
                let zero = parts.dropFirst().contains { $0.hasPrefix("q=") && (Double($0.dropFirst(2)) ?? 1) == 0 }
                if zero { refused.insert(name) } else { accepted.insert(name) }
            }
        }
        for coding in [Coding.gzip, .deflate] {
            if accepted.contains(coding.rawValue) || (accepted.contains("*") && !refused.contains(coding.rawValue)) {
                if !refused.contains(coding.rawValue) { return coding }
            }
        }
        return nil
    }

    /// A window no larger than the body needs: zlib's state for the default 32 KB window is
    /// ~260 KB per response, a 4 KB results body needs a 4 KB window.
    static func configuration(forLength length: Int?) -> ZlibConfiguration {
        guard let length else { return ZlibConfiguration(windowSize: 15, compressionLevel: 6, memoryLevel: 8) }
        var bits: Int32 = 9
        while bits < 15, (1 << bits) < length { bits += 1 }
        return ZlibConfiguration(windowSize: bits, compressionLevel: 6, memoryLevel: max(1, min(8, bits - 7)))
    }
}

extension CompressionMiddleware {
    /// A whole body compressed at once (the results fast path caches one per snapshot).
    static func compress(_ body: ByteBuffer, coding: Coding) throws -> ByteBuffer {
        let compressor = try ZlibCompressor(
            algorithm: coding.algorithm, configuration: Self.configuration(forLength: body.readableBytes))
        var input = body
        var output = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: .finish)
        return output
    }
}

/// Compresses what is written through it, flushing after each buffer.
struct CompressingWriter: ResponseBodyWriter {
    var base: any ResponseBodyWriter
    let compressor: ZlibCompressor

    init(base: any ResponseBodyWriter, coding: CompressionMiddleware.Coding, configuration: ZlibConfiguration) throws {
        self.base = base
        self.compressor = try ZlibCompressor(algorithm: coding.algorithm, configuration: configuration)
    }

    mutating func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }
        var input = buffer
        var output = ByteBufferAllocator().buffer(capacity: self.compressor.maxSize(from: input))
        try self.compressor.deflate(from: &input, to: &output, flush: .sync)
        try await self.base.write(output)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        // Everything written so far was flushed: the end is the final block and the trailer.
        var input = ByteBufferAllocator().buffer(capacity: 16)
        var output = ByteBufferAllocator().buffer(capacity: 64)
        try self.compressor.deflate(from: &input, to: &output, flush: .finish)
        try await self.base.write(output)
        try await self.base.finish(trailingHeaders)
    }
}
