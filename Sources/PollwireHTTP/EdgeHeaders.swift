import HTTPTypes
import Hummingbird
import PollwireCore

/// Headers every response carries, whoever answers it (the router, the live handlers).
enum SecurityHeaders {
    /// For a JSON API: nothing in a response may run, be framed, or be sniffed into another type.
    static let plain: HTTPFields = [
        .xContentTypeOptions: "nosniff",
        .contentSecurityPolicy: "default-src 'none'; frame-ancestors 'none'",
        .xFrameOptions: "DENY",
        .referrerPolicy: "no-referrer",
    ]

    /// With TLS, browsers are also told to keep to HTTPS (two years).
    static let secure: HTTPFields = plain + [.strictTransportSecurity: "max-age=63072000"]

    static func fields(tls: Bool) -> HTTPFields { tls ? secure : plain }
}

/// Who may call a poll's voter endpoints from a browser: `PollSettings.allowedOrigins`.
enum OriginPolicy {
    /// Whether a request with this `Origin` may use the poll. No `Origin` (a server, an app,
    /// curl) or an empty list allows; otherwise the origin must be listed (case-insensitive).
    static func allows(_ origin: String?, poll: Poll) -> Bool {
        guard let origin, !poll.settings.allowedOrigins.isEmpty else { return true }
        let normalized = Self.normalize(origin)
        return poll.settings.allowedOrigins.contains { Self.normalize($0) == normalized }
    }

    static func check(_ origin: String?, poll: Poll) throws(APIError) {
        guard Self.allows(origin, poll: poll) else {
            throw APIError(.forbidden, .originNotAllowed, "this poll does not accept requests from this origin")
        }
    }

    static func normalize(_ origin: String) -> Substring {
        var text = Substring(origin.lowercased())
        while text.hasSuffix("/") { text = text.dropLast() }
        return text
    }
}

/// Security headers on every response, and CORS for the voter routes.
///
/// Voter routes (votes, device tokens, a poll's definition, results, live events) answer any
/// origin's preflight: the poll is not known until the request itself, and there the poll's
/// `allowedOrigins` decide (403 `origin_not_allowed`). Management routes get no CORS headers,
/// so a browser on another origin cannot use an API key.
struct EdgeHeadersMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    let policy: ResponsePolicy
    static let allowHeaders =
        "Content-Type, Idempotency-Key, Pollwire-Device, Pollwire-Receipt, Pollwire-Voter-Token, Last-Event-ID"
    static let preflightMaxAge = "600"

    init(policy: ResponsePolicy) {
        self.policy = policy
    }

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let origin = request.headers[.origin]
        if request.method == .options, let origin {
            return self.preflight(request, origin: origin)
        }
        var response = try await next(request, context)
        self.policy.finish(
            &response.headers, origin: origin, route: Route(method: request.method, path: Substring(request.uri.path)))
        return response
    }

    private func preflight(_ request: Request, origin: String) -> Response {
        var headers = self.policy.security
        let method = request.headers[.accessControlRequestMethod].flatMap { HTTPRequest.Method($0) }
        guard let method, Route(method: method, path: Substring(request.uri.path)).isVoterRoute else {
            // Not a voter route: no CORS answer, so the browser refuses the real request.
            return Response(status: .noContent, headers: headers)
        }
        headers[.accessControlAllowOrigin] = origin
        headers[.accessControlAllowMethods] = "GET, POST"
        headers[.accessControlAllowHeaders] = Self.allowHeaders
        headers[.accessControlMaxAge] = Self.preflightMaxAge
        headers[.vary] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        return Response(status: .noContent, headers: headers)
    }
}

extension APIError.Code {
    public static let originNotAllowed = APIError.Code("origin_not_allowed")
}

extension HTTPField.Name {
    static let xContentTypeOptions = HTTPField.Name("X-Content-Type-Options")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let surrogateKey = HTTPField.Name("Surrogate-Key")!
}

extension HTTPFields {
    static func + (lhs: HTTPFields, rhs: HTTPFields) -> HTTPFields {
        var fields = lhs
        fields.append(contentsOf: rhs)
        return fields
    }
}
