import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The edge with real outside programs: curl speaking HTTP/2 (h2c with prior knowledge, and
/// TLS with ALPN), and nginx with proxy_cache in front of a Pollwire process.
@Suite(.serialized) struct EdgeProcessTests {
    static let poll = """
        {"title": "Lunch?",
         "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
                        "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}],
         "settings": {"cache": {"maxAge": 0, "sharedMaxAge": 2, "staleWhileRevalidate": 0}}}
        """

    @Test func http2WithPriorKnowledgeAndOverTLSWithALPN() async throws {
        let directory = temporaryDirectory("h2")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let made = try run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate,
            ])
        #expect(made.status == 0, "\(made.output)")

        let plain = try await ServerProcess.start(dataDir: directory.appendingPathComponent("plain"))
        defer { plain.terminate() }
        let base = "http://127.0.0.1:\(plain.port)"
        #expect(try curlVersion(["--http2-prior-knowledge", "\(base)/healthz"]) == "2")
        #expect(try curlVersion(["--http1.1", "\(base)/healthz"]) == "1.1")

        // The live SSE endpoint over an HTTP/2 stream: the current results at once.
        let apiKey = try ServerProcess.runTool([
            "keys", "create", "--data-dir", directory.appendingPathComponent("plain").path,
        ])
        .trimmingCharacters(in: .whitespacesAndNewlines)
        let client = plain.client()
        let pollID = try #require(
            try await client.json(.post, "/v1/polls", Self.poll, headers: [.authorization: "Bearer \(apiKey)"])
                .object()["id"] as? String)
        _ = try await client.json(.post, "/v1/polls/\(pollID)/open", headers: [.authorization: "Bearer \(apiKey)"])
        try await client.shutdown()
        let stream = try run(
            "/usr/bin/curl",
            ["-s", "-N", "--http2-prior-knowledge", "--max-time", "2", "\(base)/v1/polls/\(pollID)/live"])
        #expect(stream.output.contains("event: results"), "\(stream.output)")
        #expect(stream.output.contains("\"poll\":\"\(pollID)\""))

        let secure = try await ServerProcess.start(
            dataDir: directory.appendingPathComponent("tls"),
            arguments: ["--tls-certificate", certificate, "--tls-key", key])
        defer { secure.terminate() }
        #expect(secure.output.text.contains("listening on https://"))
        let tlsBase = "https://127.0.0.1:\(secure.port)"
        #expect(try curlVersion(["--cacert", certificate, "--http2", "\(tlsBase)/healthz"]) == "2")
        #expect(try curlVersion(["--cacert", certificate, "--http1.1", "\(tlsBase)/healthz"]) == "1.1")
        let headers = try run(
            "/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", "--cacert", certificate, "\(tlsBase)/healthz"])
        #expect(headers.output.lowercased().contains("strict-transport-security: max-age=63072000"))

        // HTTP/2 off: prior knowledge is not understood, HTTP/1.1 still is.
        let noH2 = try await ServerProcess.start(
            dataDir: directory.appendingPathComponent("noh2"), environment: ["POLLWIRE_HTTP_HTTP2": "false"])
        defer { noH2.terminate() }
        #expect(try curlVersion(["--http2-prior-knowledge", "http://127.0.0.1:\(noH2.port)/healthz"]) != "2")
        #expect(try curlVersion(["--http1.1", "http://127.0.0.1:\(noH2.port)/healthz"]) == "1.1")
    }

    /// nginx with proxy_cache in front: hits within `s-maxage`, a 304 revalidation when nothing
    /// changed, a new version at most `s-maxage` after a vote; with the purge hook on, a vote's
    /// new version shows through the cache long before the TTL ends.
    @Test func nginxCachesResultsForTheirTTLAndPurgesOnChange() async throws {
        let directory = temporaryDirectory("cdn")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dataDir = directory.appendingPathComponent("data")
        let pollwirePort = try freePort()
        let nginxPort = try freePort()
        let nginx = try Nginx.start(directory: directory, port: nginxPort, upstream: pollwirePort)
        defer { nginx.terminate() }
        let apiKey = try ServerProcess.runTool(["keys", "create", "--data-dir", dataDir.path])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let auth: HTTPFields = [.authorization: "Bearer \(apiKey)"]

        // 1. No purge: the cache alone.
        var server = try await ServerProcess.start(dataDir: dataDir, arguments: ["--http-port", "\(pollwirePort)"])
        let direct = server.client()
        let short = try #require(
            try await direct.json(.post, "/v1/polls", Self.poll, headers: auth).object()["id"] as? String)
        _ = try await direct.json(.post, "/v1/polls/\(short)/open", headers: auth)
        let path = "/v1/polls/\(short)/results"

        let first = try fetch(nginxPort, path)
        #expect(first.cache == "MISS")
        #expect(first.version == 0)
        #expect(first.headers.contains("s-maxage=2"))
        #expect(first.headers.contains("Surrogate-Key: poll-\(short)"))
        let second = try fetch(nginxPort, path)
        #expect(second.cache == "HIT")
        #expect(second.body == first.body)

        // Nothing changed when the TTL ends: nginx revalidates with If-None-Match and Pollwire
        // answers 304. (nginx keeps validity in whole seconds: a 2 s TTL ends within 3 s. With
        // `proxy_cache_background_update` the request that finds the copy expired gets it as
        // STALE while the revalidation runs beside it.)
        try await Task.sleep(for: .seconds(3.2))
        let revalidated = try fetch(nginxPort, path)
        #expect(["REVALIDATED", "STALE"].contains(revalidated.cache), "\(revalidated.headers)")
        #expect(revalidated.version == 0)
        var notModified = false
        for _ in 0..<50 where !notModified {
            let metrics = try await direct.json(.get, "/metrics").text
            notModified = metrics.split(separator: "\n").contains {
                $0.hasPrefix("pollwire_http_requests_total") && $0.contains(#"route="/v1/polls/{id}/results""#)
                    && $0.contains(#"status="304""#)
            }
            if !notModified { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(notModified, "nginx revalidated with If-None-Match and got 304 from Pollwire")
        #expect(try fetch(nginxPort, path).cache == "HIT", "fresh again after the revalidation")

        // A vote: the cache may serve the old version, but never past the TTL.
        let voted = ContinuousClock.now
        let vote = try await direct.json(
            .post, "/v1/polls/\(short)/votes", #"{"voter": "a", "answers": {"q1": ["a"]}}"#)
        #expect(vote.status == .created)
        #expect(try fetch(nginxPort, path).version == 0, "fresh within the TTL: the cached copy")
        let fresh = try await fetchUntilChanged(nginxPort, path, since: voted)
        #expect(fresh.version == 1)
        #expect(ContinuousClock.now - voted < .seconds(3.5), "the new version showed once the 2 s TTL ended")
        try await direct.shutdown()
        server.terminate()
        #expect(try await server.waitForExit(timeout: .seconds(10)) == 0)

        // 2. With the purge hook: a long TTL, and still the new version within the purge interval.
        server = try await ServerProcess.start(
            dataDir: dataDir,
            arguments: [
                "--http-port", "\(pollwirePort)", "--purge-url",
                "http://127.0.0.1:\(nginxPort)/purge/v1/polls/{poll}/results",
                "--purge-interval-seconds", "0.2",
            ])
        defer { server.terminate() }
        let client = server.client()
        let long = try #require(
            try await client.json(
                .post, "/v1/polls",
                Self.poll.replacingOccurrences(of: "\"sharedMaxAge\": 2", with: "\"sharedMaxAge\": 60"),
                headers: auth
            ).object()["id"] as? String)
        _ = try await client.json(.post, "/v1/polls/\(long)/open", headers: auth)
        // The open is purged too (within the 0.2 s interval): let that purge pass before caching.
        try await Task.sleep(for: .milliseconds(600))
        let longPath = "/v1/polls/\(long)/results"
        _ = try fetch(nginxPort, longPath)
        #expect(try fetch(nginxPort, longPath).cache == "HIT")
        let purgeVote = ContinuousClock.now
        _ = try await client.json(.post, "/v1/polls/\(long)/votes", #"{"voter": "b", "answers": {"q1": ["b"]}}"#)
        let purged = try await fetchUntilChanged(nginxPort, longPath, since: purgeVote)
        #expect(purged.version == 1)
        #expect(ContinuousClock.now - purgeVote < .seconds(2), "purged, not expired: the TTL is 60 s")
        #expect(try await client.json(.get, "/metrics").text.contains(#"pollwire_purge_requests_total{result="ok"}"#))
        try await client.shutdown()
    }
}

// MARK: Helpers

struct CommandResult {
    let status: Int32
    let output: String
}

/// Runs a program to completion (at most 20 s) and returns its status and standard output.
func run(_ path: String, _ arguments: [String]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + 20, execute: killer)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    return CommandResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
}

/// The HTTP version curl used for a request ("1.1", "2"), or what it printed on failure.
func curlVersion(_ arguments: [String]) throws -> String {
    try run("/usr/bin/curl", ["-s", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_version}"] + arguments).output
}

/// A free loopback port: bound, read, released.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw ServerProcessError(message: "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct Fetched {
    let headers: String
    let body: String
    var cache: String? {
        self.headers.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("x-cache-status:") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces)
    }
    var version: Int? {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8)) as? [String: Any])?["version"] as? Int
    }
}

/// GETs `path` every 50 ms until its version is no longer 0, at most 5 s after `since`.
func fetchUntilChanged(_ port: Int, _ path: String, since: ContinuousClock.Instant) async throws -> Fetched {
    var fetched = try fetch(port, path)
    while fetched.version == 0, ContinuousClock.now - since < .seconds(5) {
        try await Task.sleep(for: .milliseconds(50))
        fetched = try fetch(port, path)
    }
    return fetched
}

/// One GET through curl: response head and body.
func fetch(_ port: Int, _ path: String) throws -> Fetched {
    let result = try run("/usr/bin/curl", ["-s", "-i", "--max-time", "5", "http://127.0.0.1:\(port)\(path)"])
    let parts = result.output.components(separatedBy: "\r\n\r\n")
    return Fetched(headers: parts.first ?? "", body: parts.dropFirst().joined(separator: "\r\n\r\n"))
}

/// nginx in the foreground with a proxy_cache in front of `upstream`, and `/purge/<path>` from
/// 127.0.0.1 (ngx_cache_purge, Debian's libnginx-mod-http-cache-purge). Its other syntax (a
/// `PURGE` method in the cached location) crashes this nginx 1.22 worker with SIGSEGV, and so
/// does running without a master process; `user root` lets the workers use the cache directory
/// the tests made (ignored when not run as root).
final class Nginx: @unchecked Sendable {
    let process: Process

    private init(process: Process) { self.process = process }

    static func start(directory: URL, port: Int, upstream: Int) throws -> Nginx {
        let root = directory.appendingPathComponent("nginx")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let config = """
            load_module /usr/lib/nginx/modules/ngx_http_cache_purge_module.so;
            daemon off;
            worker_processes 1;
            user root;
            pid \(root.path)/nginx.pid;
            error_log \(root.path)/error.log warn;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path \(root.path)/body;
                proxy_temp_path \(root.path)/proxy;
                fastcgi_temp_path \(root.path)/fastcgi;
                uwsgi_temp_path \(root.path)/uwsgi;
                scgi_temp_path \(root.path)/scgi;
                proxy_cache_path \(root.path)/cache levels=1:2 keys_zone=results:1m inactive=5m;
                upstream pollwire { server 127.0.0.1:\(upstream); keepalive 8; }
                server {
                    listen 127.0.0.1:\(port);
                    location ~ ^/purge(/.*) {
                        allow 127.0.0.1;
                        deny all;
                        proxy_cache_purge results $1$is_args$args;
                    }
                    location / {
                        proxy_pass http://pollwire;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_cache results;
                        proxy_cache_key $uri$is_args$args;
                        proxy_cache_revalidate on;
                        proxy_cache_use_stale updating;
                        proxy_cache_background_update on;
                        add_header X-Cache-Status $upstream_cache_status always;
                    }
                }
            }
            """
        let file = root.appendingPathComponent("nginx.conf")
        try Data(config.utf8).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-p", root.path, "-c", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let nginx = Nginx(process: process)
        for _ in 0..<100 {
            if (try? run("/usr/bin/curl", ["-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]))?.status == 0 {
                return nginx
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        nginx.terminate()
        let log = (try? String(contentsOf: root.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
        throw ServerProcessError(message: "nginx did not start: \(log)")
    }

    func terminate() {
        if self.process.isRunning {
            self.process.terminate()
            self.process.waitUntilExit()
        }
    }
}
