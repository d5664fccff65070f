import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore
public import PollwireCore

/// An error a client sees: a stable code, a status, a message, and for validation errors the
/// field that is wrong. Every error response has the one shape
/// `{"error": {"code": "...", "message": "...", "field": "..."}}`.
public struct APIError: Error, HTTPResponseError, Sendable, Equatable {
    /// The stable, machine-readable code; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { self.rawValue }

        public static let badRequest = Code("bad_request")
        public static let invalidJSON = Code("invalid_json")
        public static let unauthorized = Code("unauthorized")
        public static let forbidden = Code("forbidden")
        public static let notFound = Code("not_found")
        public static let methodNotAllowed = Code("method_not_allowed")
        public static let alreadyVoted = Code("already_voted")
        public static let conflict = Code("conflict")
        public static let pollNotOpen = Code("poll_not_open")
        public static let payloadTooLarge = Code("payload_too_large")
        public static let unsupportedMediaType = Code("unsupported_media_type")
        public static let invalidField = Code("invalid_field")
        public static let idempotencyKeyReused = Code("idempotency_key_reused")
        public static let rateLimited = Code("rate_limited")
        public static let overloaded = Code("overloaded")
        public static let notReady = Code("not_ready")
        public static let shuttingDown = Code("shutting_down")
        public static let storageFailure = Code("storage_failure")
        public static let storeUnavailable = Code("store_unavailable")
        public static let requestTimeout = Code("request_timeout")
        public static let headerTooLarge = Code("header_too_large")
        public static let internalError = Code("internal_error")
    }

    public let status: HTTPResponse.Status
    public let code: Code
    public let message: String
    /// For `invalid_field`: the JSON path of the wrong field.
    public let field: String?
    /// For 429 and 503: seconds after which a retry may succeed.
    public let retryAfter: Int?
    /// More headers for the response (the RateLimit fields of a 429).
    public let headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status, _ code: Code, _ message: String, field: String? = nil,
        retryAfter: Int? = nil, headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfter = retryAfter
        self.headers = headers
    }

    public static func invalid(_ error: ValidationError) -> APIError {
        APIError(.unprocessableContent, .invalidField, error.description, field: error.field)
    }

    public static func notFound(_ what: String) -> APIError {
        APIError(.notFound, .notFound, "\(what) not found")
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        self.response(allocator: ByteBufferAllocator())
    }

    /// The JSON error response.
    public func response(allocator: ByteBufferAllocator) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        headers.append(contentsOf: self.headers)
        return Response(
            status: self.status, headers: headers, body: .init(byteBuffer: allocator.buffer(string: self.json)))
    }

    /// The JSON body: `{"error":{"code":"...","message":"..."}}`, with `field` where there is one.
    public var json: String {
        var text = "{\"error\":{\"code\":\"\(self.code.rawValue)\",\"message\":"
        JSONText.appendQuoted(self.message, to: &text)
        if let field {
            text.append(",\"field\":")
            JSONText.appendQuoted(field, to: &text)
        }
        text.append("}}")
        return text
    }
}

extension APIError {
    /// Maps any error thrown while handling a request to the client's view of it.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as ValidationError:
            return .invalid(error)
        case let error as HTTPError:
            switch error.status {
            case .contentTooLarge:
                return APIError(.contentTooLarge, .payloadTooLarge, "the request body is too large")
            case .notFound:
                return APIError(.notFound, .notFound, "no such route")
            case .methodNotAllowed:
                return APIError(.methodNotAllowed, .methodNotAllowed, "method not allowed on this route")
            case .badRequest:
                return APIError(.badRequest, .badRequest, error.body ?? "bad request")
            default:
                return APIError(
                    error.status, Code(error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")),
                    error.body ?? error.status.reasonPhrase)
            }
        default:
            return APIError(.internalServerError, .internalError, "internal error")
        }
    }
}
