import HTTPTypes

/// What a request is for, decided once from its method and path: the one place the API's paths
/// are parsed. Admission control, the edge headers (CORS), the live handlers and the WebSocket
/// upgrade ask it instead of splitting the path themselves.
///
/// Cost: one scan of the path (no allocation for the routes without an id; one `Substring`
/// view, not a copy, for those with one).
enum Route: Equatable {
    /// `GET`/`HEAD /v1/polls/{id}/results`
    case results(poll: Substring)
    /// `GET`/`HEAD /v1/results?polls=...`
    case manyResults
    /// `POST /v1/polls/{id}/votes`
    case vote(poll: Substring)
    /// `POST /v1/votes:batch`
    case votesBatch
    /// `GET`/`HEAD /v1/polls/{id}`
    case poll(Substring)
    /// `GET`/`HEAD /v1/polls/{id}/live` (Server-Sent Events; the stream is `GET`'s)
    case liveEvents(poll: Substring)
    /// `GET /v1/live` (the WebSocket upgrade)
    case liveSocket
    /// `POST /v1/device-tokens`
    case deviceTokens
    /// `/healthz`, `/readyz`, `/metrics`: never refused by admission control.
    case operations
    /// Anything else: management, exports, the web face, unknown paths.
    case other

    init(method: HTTPRequest.Method, path: Substring) {
        let path = path.firstIndex(of: "?").map { path[..<$0] } ?? path
        switch path {
        case "/healthz", "/readyz", "/metrics":
            self = .operations
            return
        case "/v1/results":
            self = method == .get || method == .head ? .manyResults : .other
            return
        case "/v1/live":
            self = method == .get ? .liveSocket : .other
            return
        case "/v1/votes:batch":
            self = method == .post ? .votesBatch : .other
            return
        case "/v1/device-tokens":
            self = method == .post ? .deviceTokens : .other
            return
        default:
            break
        }
        let prefix = "/v1/polls/"
        guard path.hasPrefix(prefix) else {
            self = .other
            return
        }
        let rest = path.dropFirst(prefix.utf8.count)
        guard let slash = rest.firstIndex(of: "/") else {
            self = !rest.isEmpty && (method == .get || method == .head) ? .poll(rest) : .other
            return
        }
        let id = rest[..<slash]
        let tail = rest[rest.index(after: slash)...]
        guard !id.isEmpty else {
            self = .other
            return
        }
        switch (method, tail) {
        case (.get, "results"), (.head, "results"): self = .results(poll: id)
        case (.post, "votes"): self = .vote(poll: id)
        case (.get, "live"), (.head, "live"): self = .liveEvents(poll: id)
        default: self = .other
        }
    }

    init(_ request: HTTPRequest) {
        self.init(method: request.method, path: Substring(request.path ?? ""))
    }

    /// The routes a poll's audience calls from a browser: CORS for any origin (the poll's
    /// `allowedOrigins` decide at the request). `HEAD` of a live stream counts as its `GET`.
    var isVoterRoute: Bool {
        switch self {
        case .results, .manyResults, .vote, .poll, .liveEvents, .deviceTokens: true
        case .votesBatch, .liveSocket, .operations, .other: false
        }
    }
}
