import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore

extension Request {
    /// Reads and decodes a JSON body of at most `limit` bytes.
    ///
    /// 415 unless the body is declared `application/json`; 413 past `limit` (checked against
    /// Content-Length before reading when it is given); 400 for malformed JSON, naming the
    /// field when the decoder can. `fast`, when given, reads the bytes first (`BallotJSON`); where
    /// it gives up, `JSONDecoder` reads them and makes the error.
    func decodeJSON<Value: Decodable>(
        _ type: Value.Type, limit: Int, fast: ((UnsafeRawBufferPointer) -> Value?)? = nil
    ) async throws -> Value {
        guard let contentType = self.headers[.contentType],
            contentType.lowercased().hasPrefix("application/json")
        else {
            throw APIError(
                .unsupportedMediaType, .unsupportedMediaType, "the body must be application/json")
        }
        if let length = self.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, .payloadTooLarge, "the request body is larger than \(limit) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await self.body.collect(upTo: limit)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw APIError(.contentTooLarge, .payloadTooLarge, "the request body is larger than \(limit) bytes")
        }
        if let fast, let value = buffer.withUnsafeReadableBytes(fast) { return value }
        do {
            return try PollwireJSON.shared.decode(Value.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError.decoding(error)
        } catch let error as ValidationError {
            throw APIError.invalid(error)
        }
    }
}

extension APIError {
    static func decoding(_ error: DecodingError) -> APIError {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.reduce(into: "") { text, key in
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return APIError(.unprocessableContent, .invalidField, "\(field): is required", field: field)
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let field = path(context.codingPath)
            return APIError(
                .unprocessableContent, .invalidField, "\(field): \(context.debugDescription)", field: field)
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            let field = path(context.codingPath)
            return APIError(
                .unprocessableContent, .invalidField, "\(field): \(context.debugDescription)", field: field)
        default:
            return APIError(.badRequest, .invalidJSON, "the body is not valid JSON")
        }
    }
}
