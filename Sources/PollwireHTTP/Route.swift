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
        // Bytes, not Characters: every request passes here (up to three times), and grapheme
        // breaking cost more than the rest of a results read's routing.
        let utf8 = path.utf8
        let bytes = utf8[..<(utf8.firstIndex(of: UInt8(ascii: "?")) ?? utf8.endIndex)]
        if Self.isOperations(path: bytes) {
            self = .operations
            return
        }
        switch bytes.count {
        case 11 where bytes.elementsEqual("/v1/results".utf8):
            self = method == .get || method == .head ? .manyResults : .other
            return
        case 8 where bytes.elementsEqual("/v1/live".utf8):
            self = method == .get ? .liveSocket : .other
            return
        case 15 where bytes.elementsEqual("/v1/votes:batch".utf8):
            self = method == .post ? .votesBatch : .other
            return
        case 17 where bytes.elementsEqual("/v1/device-tokens".utf8):
            self = method == .post ? .deviceTokens : .other
            return
        default:
            break
        }
        let prefix = "/v1/polls/".utf8
        guard bytes.starts(with: prefix) else {
            self = .other
            return
        }
        let rest = bytes.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
            self =
                !rest.isEmpty && (method == .get || method == .head)
                ? .poll(path[rest.startIndex..<rest.endIndex]) : .other
            return
        }
        let id = path[rest.startIndex..<slash]
        let tail = rest[rest.index(after: slash)...]
        guard !id.isEmpty else {
            self = .other
            return
        }
        switch method {
        case .get, .head:
            if tail.elementsEqual("results".utf8) {
                self = .results(poll: id)
            } else if tail.elementsEqual("live".utf8) {
                self = .liveEvents(poll: id)
            } else {
                self = .other
            }
        case .post:
            self = tail.elementsEqual("votes".utf8) ? .vote(poll: id) : .other
        default:
            self = .other
        }
    }

    /// Whether a path (its bytes, before any query) is one of `.operations`: also asked by
    /// `RequestFraming` on a request's raw bytes, before it is decoded.
    static func isOperations<Path: Collection<UInt8>>(path: Path) -> Bool {
        switch path.count {
        case 8: path.elementsEqual("/healthz".utf8) || path.elementsEqual("/metrics".utf8)
        case 7: path.elementsEqual("/readyz".utf8)
        default: false
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
