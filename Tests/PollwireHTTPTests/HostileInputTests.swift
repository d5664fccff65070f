import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import PollwireHTTP
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Malformed and slow HTTP/1.1 over real loopback sockets: each is answered in the JSON error
/// shape and closed, or closed, within a second, and its descriptor is released.
@Suite struct HostileInputTests {
    /// One malformed head per class the decoder refuses, and the status it must get.
    static let malformed: [(name: String, bytes: [UInt8], status: String)] = [
        (
            "negative Content-Length",
            Array("POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".utf8), "400"
        ),
        (
            "hex Content-Length",
            Array("POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n".utf8), "400"
        ),
        (
            "two Content-Lengths",
            Array(
                "POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".utf8),
            "400"
        ),
        (
            "Content-Length with chunked",
            Array(
                "POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    .utf8), "400"
        ),
        (
            "NUL in a header", Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a".utf8) + [0] + Array("b\r\n\r\n".utf8),
            "400"
        ),
        ("space in the target", Array("GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n".utf8), "400"),
        ("raw 0xFF in the target", Array("GET /".utf8) + [0xFF] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8), "400"),
        (
            "100 KB header line",
            Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n".utf8),
            "431"
        ),
        (
            "TLS on the plain port",
            [0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00, 0xA1, 0x03, 0x03] + Array(repeating: 0x2A, count: 64),
            "400"
        ),
        (
            "malformed chunk",
            Array(
                "POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
                    .utf8),
            "400"
        ),
    ]

    @Test func malformedRequestsAreAnsweredAndClosed() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            for (name, bytes, status) in Self.malformed {
                let started = ContinuousClock.now
                let (text, closed) = try await rawBytesExchange(port: port, chunks: [bytes], holdOpenFor: .seconds(1))
                #expect(closed, "\(name): the server closes the connection within 1 s")
                #expect(ContinuousClock.now - started < .seconds(1), "\(name)")
                #expect(text.hasPrefix("HTTP/1.1 \(status) "), "\(name): \(text.prefix(80))")
                #expect(text.contains("Connection: close") || text.contains("connection: close"), "\(name)")
                let code = status == "431" ? "header_too_large" : "bad_request"
                #expect(text.contains(#"{"error":{"code":"\#(code)""#), "\(name): \(text)")
                #expect(text.contains("X-Content-Type-Options: nosniff"), "\(name): the security headers")
            }
        }
    }

    /// 200 malformed connections leave no descriptor behind in the server's process.
    @Test func malformedConnectionsReleaseTheirDescriptors() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            _ = try await rawBytesExchange(port: port, chunks: [Self.malformed[0].bytes], holdOpenFor: .seconds(1))
            let before = try openDescriptors()
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    let bytes = Self.malformed[index % Self.malformed.count].bytes
                    group.addTask {
                        try await rawBytesExchange(port: port, chunks: [bytes], holdOpenFor: .seconds(5)).closed
                    }
                }
                for try await closed in group { #expect(closed) }
            }
            // The client's sockets are closed too; give the server's loop a moment to finish closing.
            var after = try openDescriptors()
            for _ in 0..<100 where after > before + 5 {
                try await Task.sleep(for: .milliseconds(20))
                after = try openDescriptors()
            }
            #expect(after <= before + 5, "descriptors before: \(before), after: \(after)")
        }
    }

    /// Before the server knows the protocol (the HTTP/2 preface or HTTP/1.1): a client that closes
    /// its side is closed at once, and one that trickles the preface is cut at the read deadline.
    @Test func connectionsThatNeverDecideAreClosed() async throws {
        var settings = PollwireSettings()
        settings.requestReadTimeout = .milliseconds(500)
        try await TestServer.run(settings: settings) { server in
            let port = try #require(server.client.port)
            for bytes in [[UInt8](), Array("P".utf8), Array("PRI * HT".utf8)] {
                let fd = try LoopbackClient.connect(port: port)
                defer { close(fd) }
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                shutdown(fd, Int32(SHUT_WR))
                #expect(LoopbackClient.waitForClose(fd, within: .seconds(1)), "\(bytes.count) bytes then EOF")
            }
            let preface = Array("PRI * HTTP/2.0\r\n".utf8).map { [$0] }
            let started = ContinuousClock.now
            let trickled = try await rawBytesExchange(
                port: port, chunks: preface, pause: .milliseconds(100), holdOpenFor: .seconds(3))
            #expect(trickled.closed)
            #expect(ContinuousClock.now - started < .seconds(2), "cut at the 0.5 s deadline, not after 16 bytes")
        }
    }

    /// A client that trickles header lines (slowloris) is cut at the read deadline, counted from
    /// its first byte; so is one that trickles its body.
    @Test func slowHeadsAndBodiesAreCutAtTheDeadline() async throws {
        var settings = PollwireSettings()
        settings.requestReadTimeout = .milliseconds(500)
        try await TestServer.run(settings: settings) { server in
            let port = try #require(server.client.port)
            let head = ["GET /healthz HTTP/1.1\r\n"] + (0..<40).map { "X-Slow-\($0): 1\r\n" }
            let started = ContinuousClock.now
            let slowHead = try await rawBytesExchange(
                port: port, chunks: head.map { Array($0.utf8) }, pause: .milliseconds(100), holdOpenFor: .seconds(3))
            #expect(slowHead.closed)
            #expect(slowHead.text.hasPrefix("HTTP/1.1 408 "), "\(slowHead.text.prefix(80))")
            #expect(slowHead.text.contains(#""code":"request_timeout""#))
            // 40 lines 100 ms apart would take 4 s: cut at ~0.5 s (the writes go on into a closed socket).
            #expect(ContinuousClock.now - started < .seconds(4))

            let body = #"{"voter": "slow", "answers": {"q1": ["a"]}}"#
            let poll = try await server.createPoll()
            let slowBody =
                [
                    "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
                ]
                + body.map { String($0) }
            let cut = try await rawBytesExchange(
                port: port, chunks: slowBody.map { Array($0.utf8) }, pause: .milliseconds(50), holdOpenFor: .seconds(3))
            #expect(cut.closed)
            #expect(!cut.text.contains("\"accepted\":true"), "the vote that never arrived whole is not counted")
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(results["total"] as? Int == 0)

            // A request that arrives whole, even in pieces within the deadline, is answered.
            let pieces = ["GET /healthz HTTP/1.1\r\n", "Host: x\r\n", "Connection: close\r\n\r\n"]
            let whole = try await rawExchange(
                port: port, chunks: pieces, pause: .milliseconds(100), holdOpenFor: .seconds(3))
            #expect(whole.text.hasPrefix("HTTP/1.1 200 "), "\(whole.text.prefix(80))")
        }
    }
}

/// Requests whose bodies trickle in do not take admission places: well-behaved votes still go
/// through while they hang, and the slow ones are cut at the read deadline.
@Suite struct SlowBodyAdmissionTests {
    @Test func slowBodiesDoNotFillTheAdmissionPool() async throws {
        var settings = PollwireSettings()
        settings.admission.maxInFlight = 2
        settings.requestReadTimeout = .seconds(2)
        try await TestServer.run(settings: settings) { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            let head =
                "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: 100\r\n\r\n{\"voter\": "
            let slow = (0..<20).map { _ in
                Task { try await rawBytesExchange(port: port, chunks: [Array(head.utf8)], holdOpenFor: .seconds(5)) }
            }
            try await Task.sleep(for: .milliseconds(300))
            for index in 0..<5 {
                let vote = try await server.vote(poll, #"{"voter": "fast-\#(index)", "answers": {"q1": ["a"]}}"#)
                #expect(vote.status == .created, "a whole vote beside 20 slow bodies: \(vote.status)")
            }
            for task in slow {
                let (text, closed) = try await task.value
                #expect(
                    closed && text.hasPrefix("HTTP/1.1 408 "),
                    "the slow body is cut at the deadline: \(text.prefix(40))")
            }
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(results["total"] as? Int == 5)
        }
    }
}

/// HEAD answers every GET route as GET does: the same status and headers, no body.
@Suite struct HeadTests {
    @Test func headAnswersEveryGetRouteWithoutABody() async throws {
        var settings = PollwireSettings()
        settings.webDirectory = webDirectory()
        try await TestServer.run(settings: settings) { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            _ = try await server.vote(poll, #"{"voter": "h", "answers": {"q1": ["a"]}}"#)
            let auth = "Authorization: Bearer \(server.key)\r\n"
            let routes: [(String, String)] = [
                ("/healthz", ""), ("/readyz", ""), ("/metrics", ""), ("/v1/polls/\(poll)", ""),
                ("/v1/polls/\(poll)/results", ""), ("/v1/results?polls=\(poll)", ""), ("/v1/polls", auth),
                ("/v1/polls/\(poll)/export?format=csv", auth), ("/v1/polls/nope/results", ""),
                ("/embed/pollwire.js", ""), ("/embed/\(poll)", ""), ("/p/\(poll)", ""), ("/admin", ""),
            ]
            for (path, extra) in routes {
                let get = try await rawResponse(
                    port: port, "GET \(path) HTTP/1.1\r\nHost: x\r\n\(extra)Connection: close\r\n\r\n")
                let head = try await rawResponse(
                    port: port, "HEAD \(path) HTTP/1.1\r\nHost: x\r\n\(extra)Connection: close\r\n\r\n")
                #expect(head.status == get.status, "HEAD \(path): \(head.status), GET: \(get.status)")
                #expect(head.body.isEmpty, "HEAD \(path) has no body (\(head.body.count) bytes)")
                #expect(head.headers["content-type"] == get.headers["content-type"], "HEAD \(path): Content-Type")
                if let length = get.headers["content-length"], path != "/metrics" {
                    #expect(head.headers["content-length"] == length, "HEAD \(path): Content-Length")
                }
            }
            let live = try await rawResponse(
                port: port, "HEAD /v1/polls/\(poll)/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(live.status == 200 && live.headers["content-type"] == "text/event-stream" && live.body.isEmpty)
        }
    }
}

/// `Web/` of this checkout.
func webDirectory() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Web").path
}

/// One request over its own connection (it must ask for `Connection: close`): status, headers
/// (lowercased names) and the raw body.
func rawResponse(port: Int, _ request: String) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let bytes = try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: request))
        var bytes: [UInt8] = []
        for try await buffer in inbound { bytes += buffer.readableBytesView }
        return bytes
    }
    let separator = Array("\r\n\r\n".utf8)
    let end = try #require(
        (0...(bytes.count - separator.count)).first { bytes[$0..<$0 + separator.count].elementsEqual(separator) })
    let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
    let status = Int(lines[0].split(separator: " ")[1]) ?? 0
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return (status, headers, Array(bytes[(end + separator.count)...]))
}

/// The number of descriptors this process has open.
func openDescriptors() throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
}

/// Writes raw `chunks` to a new loopback connection, `pause` apart (stopping when the server has
/// closed), then reads until the server closes or `holdOpenFor` passes.
func rawBytesExchange(
    port: Int, chunks: [[UInt8]], pause: Duration = .zero, holdOpenFor: Duration
) async throws -> (text: String, closed: Bool) {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await channel.executeThenClose { inbound, outbound in
        for chunk in chunks {
            do {
                try await outbound.write(ByteBuffer(bytes: chunk))
            } catch {
                break
            }
            if pause > .zero { try await Task.sleep(for: pause) }
        }
        return try await withThrowingTaskGroup(of: (String, Bool)?.self) { group in
            group.addTask {
                var text = ""
                do {
                    for try await buffer in inbound {
                        text += String(decoding: buffer.readableBytesView, as: UTF8.self)
                    }
                } catch {}
                return (text, true)
            }
            group.addTask {
                try await Task.sleep(for: holdOpenFor)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first ?? ("", false)
        }
    }
}

/// A blocking loopback socket, for the cases that need a half-close.
enum LoopbackClient {
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(fd >= 0 && connected == 0)
        return fd
    }

    /// Whether the server closes the connection within `within` (reads and drops what it says).
    static func waitForClose(_ fd: Int32, within: Duration) -> Bool {
        let deadline = ContinuousClock.now + within
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            if buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) <= 0 { return true }
        }
        return false
    }
}
