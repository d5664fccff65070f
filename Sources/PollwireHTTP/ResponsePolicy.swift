import HTTPTypes

/// What every response gets on its way out, whoever answers it (the router's
/// `EdgeHeadersMiddleware` or the event-loop fast path): the security headers, and CORS for a
/// voter route called from a browser. Decided in one place so the transports cannot drift.
struct ResponsePolicy: Sendable {
    let security: HTTPFields

    static let exposeHeaders = "ETag, Retry-After, RateLimit, RateLimit-Policy, Idempotent-Replayed"

    init(tls: Bool) {
        self.security = SecurityHeaders.fields(tls: tls)
    }

    /// Adds the security headers (keeping a page's own `Content-Security-Policy` and framing)
    /// and, for a voter route with an `Origin`, the CORS response headers.
    func finish(_ fields: inout HTTPFields, origin: String?, route: Route) {
        if fields[.contentSecurityPolicy] == nil {
            fields.append(contentsOf: self.security)
        } else {
            // A page set its own policy, framing included (frame-ancestors): keep it, add the rest.
            for field in self.security where field.name != .xFrameOptions && fields[field.name] == nil {
                fields.append(field)
            }
        }
        if let origin, route.isVoterRoute {
            fields[.accessControlAllowOrigin] = origin
            fields[.accessControlExposeHeaders] = Self.exposeHeaders
            fields.append(HTTPField(name: .vary, value: "Origin"))
        }
    }
}
