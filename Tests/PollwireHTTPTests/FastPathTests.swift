import CompressNIO
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import PollwireHTTP
import Testing

/// The results fast path (answered on the event loop) gives what the router gives, and keeps the
/// order of pipelined responses when some go to the router and some do not.
@Suite struct FastPathTests {
    struct RawResponse {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? { self.headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        /// Names and values, without the framing and the clock (`Date`, `Content-Length`, chunked).
        var comparable: [String] {
            self.headers.filter { !["date", "content-length", "transfer-encoding"].contains($0.0.lowercased()) }
                .map { "\($0.0.lowercased()): \($0.1)" }.sorted()
        }
    }

    /// Sends `requests` back to back on one connection and reads `requests.count` responses.
    static func pipeline(port: Int, _ requests: [String]) async throws -> [RawResponse] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: requests.joined()))
            var bytes: [UInt8] = []
            var responses: [RawResponse] = []
            let heads = requests.map { $0.hasPrefix("HEAD ") }
            var iterator = inbound.makeAsyncIterator()
            while responses.count < requests.count {
                if let (response, used) = Self.parse(bytes, head: heads[responses.count]) {
                    responses.append(response)
                    bytes.removeFirst(used)
                    continue
                }
                guard let buffer = try await iterator.next() else { break }
                bytes += buffer.readableBytesView
            }
            return responses
        }
    }

    /// One whole response at the start of `bytes`, and how many bytes it took.
    static func parse(_ bytes: [UInt8], head: Bool) -> (RawResponse, Int)? {
        let separator = Array("\r\n\r\n".utf8)
        guard bytes.count >= 4,
            let end = (0...(bytes.count - 4)).first(where: { bytes[$0..<$0 + 4].elementsEqual(separator) })
        else { return nil }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = RawResponse(status: status, headers: headers, body: [])
        let start = end + 4
        if head || status == 304 || status == 204 { return (response, start) }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            guard bytes.count >= start + length else { return nil }
            response.body = Array(bytes[start..<start + length])
            return (response, start + length)
        }
        // Chunked.
        var index = start
        while true {
            guard
                let lineEnd = (index..<max(index, bytes.count - 1)).first(where: {
                    bytes[$0] == 13 && bytes[$0 + 1] == 10
                }),
                let size = Int(String(decoding: bytes[index..<lineEnd], as: UTF8.self), radix: 16)
            else { return nil }
            let chunk = lineEnd + 2
            guard bytes.count >= chunk + size + 2 else { return nil }
            if size == 0 { return (response, chunk + 2) }
            response.body += bytes[chunk..<chunk + size]
            index = chunk + size + 2
        }
    }

    static func get(_ path: String, _ headers: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n"
    }

    @Test func pipelinedResponsesKeepTheirOrder() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let poll = try await server.createPoll()
            let vote = #"{"voter": "p1", "answers": {"q1": ["a"]}}"#
            let post =
                "POST /v1/polls/\(poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(vote.utf8.count)\r\n\r\n\(vote)"
            let results = Self.get("/v1/polls/\(poll)/results")
            let responses = try await Self.pipeline(
                port: port,
                [
                    results, results, post, results, Self.get("/healthz"), results, Self.get("/v1/polls/nope/results"),
                    results,
                ])
            #expect(responses.map(\.status) == [200, 200, 201, 200, 200, 200, 404, 200])
            let totals = responses.map { response -> Int? in
                guard response.header("ETag") != nil else { return nil }
                return (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["total"]
                    as? Int
            }
            // Before the vote 0, after it 1: each read answered after the requests before it.
            #expect(totals == [0, 0, nil, 1, nil, 1, nil, 1])
        }
    }

    /// The same requests answered by the fast path and by the router (a query string sends a read
    /// to the router): the same status, headers (framing aside) and body.
    @Test func theFastPathAnswersAsTheRouterDoes() async throws {
        try await TestServer.run { server in
            let port = try #require(server.client.port)
            let big = (0..<60).map { #"{"id": "o\#($0)", "label": "Option \#($0)"}"# }.joined(separator: ",")
            let poll = try await server.createPoll(
                #"{"title": "Big", "questions": [{"id": "q1", "kind": "single", "prompt": "?", "options": [\#(big)]}]}"#
            )
            _ = try await server.vote(poll, #"{"voter": "f", "answers": {"q1": ["o3"]}}"#)
            let path = "/v1/polls/\(poll)/results"
            let variants = [
                "", "Origin: https://a.example\r\n", "Accept-Encoding: gzip\r\n",
                "Accept-Encoding: gzip;q=0, deflate\r\n",
                "If-None-Match: W/\"\(poll)-1\"\r\n", "If-None-Match: W/\"\(poll)-0\"\r\nOrigin: https://b.example\r\n",
            ]
            for headers in variants {
                let fast = try await Self.pipeline(port: port, [Self.get(path, headers)])[0]
                let routed = try await Self.pipeline(port: port, [Self.get(path + "?via=router", headers)])[0]
                #expect(fast.status == routed.status, "\(headers)")
                #expect(fast.comparable == routed.comparable, "\(headers)")
                if let coding = fast.header("Content-Encoding") {
                    #expect(fast.header("Content-Length") == String(fast.body.count))
                    #expect(coding == (headers.contains("q=0") ? "deflate" : "gzip"))
                    let algorithm: ZlibAlgorithm = coding == "gzip" ? .gzip : .zlib
                    var packed = ByteBuffer(bytes: fast.body)
                    var routedPacked = ByteBuffer(bytes: routed.body)
                    let unpacked = try packed.decompress(with: algorithm, maxSize: 1 << 20)
                    #expect(unpacked == (try routedPacked.decompress(with: algorithm, maxSize: 1 << 20)), "\(headers)")
                    #expect(unpacked.readableBytes > 1024)
                } else {
                    #expect(fast.body == routed.body, "\(headers)")
                }
                #expect(fast.header("Date") != nil)
            }
            let head = try await Self.pipeline(
                port: port, ["HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\n", Self.get(path)])
            #expect(head[0].status == 200 && head[0].body.isEmpty)
            #expect(head[0].header("Content-Length") == String(head[1].body.count))
            let metrics = try await server.request(.get, "/metrics").text
            #expect(
                metrics.contains(
                    #"pollwire_http_requests_total{route="/v1/polls/{id}/results",method="HEAD",status="200"} 1"#))
        }
    }
}
