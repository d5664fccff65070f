import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PollwireCore
import PollwireEngine

/// The web face, plain files from `Web/` read once at start: the embeddable widget
/// (`/embed/pollwire.js`, and `/embed/{id}` as a page for an iframe or a short vote link), the
/// presenter page (`/p/{id}`), the admin dashboard (`/admin`) and their assets (`/web/...`).
///
/// Pages get their own Content-Security-Policy (scripts and styles from this server only, no
/// inline script); the embed page may be framed by the poll's `allowedOrigins` (any origin when
/// the list is empty), the others by nobody.
struct WebController {
    struct File {
        let body: ByteBuffer
        let contentType: String
        let etag: String
    }

    let files: [String: File]
    let finder: PollFinder

    /// What a page may load: only this server's scripts, styles and connections.
    static let pagePolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "base-uri 'none'; form-action 'self'"

    /// Reads the files under `directory`; nil (with a warning) when it holds no web face.
    init?(directory: String, finder: PollFinder, logger: Logger) {
        let root = URL(fileURLWithPath: directory)
        var files: [String: File] = [:]
        let wanted = [
            "embed/pollwire.js", "embed.html", "p.html", "admin.html", "assets/presenter.js", "assets/admin.js",
            "assets/pollwire.css",
        ]
        for name in wanted {
            guard let data = FileManager.default.contents(atPath: root.appendingPathComponent(name).path) else {
                logger.warning("the web face is off: a file is missing", metadata: ["file": "\(directory)/\(name)"])
                return nil
            }
            let digest = SHA256.hash(data: data).prefix(8).map { String(format: "%02x", $0) }.joined()
            let type =
                name.hasSuffix(".js")
                ? "text/javascript; charset=utf-8"
                : name.hasSuffix(".css") ? "text/css; charset=utf-8" : "text/html; charset=utf-8"
            files[name] = File(body: ByteBuffer(data: data), contentType: type, etag: "\"\(digest)\"")
        }
        self.files = files
        self.finder = finder
    }

    func addRoutes(to router: Router<PollwireRequestContext>) {
        router.get("/embed/{id}") { request, context in
            let id = try context.parameters.require("id")
            if id == "pollwire.js" { return self.asset("embed/pollwire.js", request: request) }
            guard let poll = await self.finder.poll(id) else { throw APIError.notFound("poll") }
            return self.page("embed.html", frameAncestors: Self.frameAncestors(poll))
        }
        router.get("/p/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard await self.finder.knows(id) else { throw APIError.notFound("poll") }
            return self.page("p.html", frameAncestors: "'none'")
        }
        router.get("/admin") { _, _ in self.page("admin.html", frameAncestors: "'none'") }
        router.get("/web/{file}") { request, context in
            let file = try context.parameters.require("file")
            guard ["presenter.js", "admin.js", "pollwire.css"].contains(file) else { throw APIError.notFound("file") }
            return self.asset("assets/" + file, request: request)
        }
    }

    /// Who may frame the embed page: the poll's allowed origins, or anyone when it lists none.
    static func frameAncestors(_ poll: Poll) -> String {
        poll.settings.allowedOrigins.isEmpty ? "*" : poll.settings.allowedOrigins.joined(separator: " ")
    }

    func page(_ name: String, frameAncestors: String) -> Response {
        let file = self.files[name]!
        var headers: HTTPFields = [
            .contentType: file.contentType, .cacheControl: "no-cache",
            .contentSecurityPolicy: Self.pagePolicy + "; frame-ancestors " + frameAncestors,
        ]
        if frameAncestors == "'none'" { headers[.xFrameOptions] = "DENY" }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: file.body))
    }

    /// A script or style sheet: cacheable for 5 minutes, revalidated by ETag.
    func asset(_ name: String, request: Request) -> Response {
        let file = self.files[name]!
        // The security headers (the API's own CSP included) come from EdgeHeadersMiddleware.
        let headers: HTTPFields = [
            .contentType: file.contentType, .cacheControl: "public, max-age=300", .eTag: file.etag,
        ]
        if request.headers[.ifNoneMatch] == file.etag { return Response(status: .notModified, headers: headers) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: file.body))
    }
}
