import CompressNIO
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import PollwireEngine
import PollwireHTTP
import PollwireSQLite
import Synchronization
import Testing

/// The edge over real sockets: security headers, CORS and per-poll origins, compression,
/// admission control, permessage-deflate.
@Suite struct EdgeTests {
    static let security: [(HTTPField.Name, String)] = [
        (HTTPField.Name("X-Content-Type-Options")!, "nosniff"),
        (HTTPField.Name("Content-Security-Policy")!, "default-src 'none'; frame-ancestors 'none'"),
        (HTTPField.Name("X-Frame-Options")!, "DENY"),
        (HTTPField.Name("Referrer-Policy")!, "no-referrer"),
    ]

    static func expectSecurityHeaders(_ headers: HTTPFields, _ what: String) {
        for (name, value) in Self.security {
            #expect(headers[name] == value, "\(name) on \(what)")
        }
    }

    static func expectSecurityHeaders(raw text: String, _ what: String) {
        let head = text.components(separatedBy: "\r\n\r\n").first?.lowercased() ?? ""
        for (name, value) in Self.security {
            #expect(head.contains("\(name.canonicalName): \(value.lowercased())"), "\(name) on \(what)")
        }
    }

    @Test func everyResponseCarriesTheSecurityHeaders() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            Self.expectSecurityHeaders(try await server.request(.get, "/v1/polls/\(poll)/results").headers, "results")
            Self.expectSecurityHeaders(try await server.request(.get, "/v1/nothing").headers, "a 404")
            Self.expectSecurityHeaders(try await server.request(.post, "/v1/polls", json: "{}").headers, "a 401")
            Self.expectSecurityHeaders(try await server.request(.get, "/healthz").headers, "/healthz")
            let port = try #require(server.client.port)
            let sse = try await SSEClient.connect(port: port, path: "/v1/polls/\(poll)/live")
            #expect(try await sse.waitFor { !$0.isEmpty })
            Self.expectSecurityHeaders(raw: sse.text, "the SSE stream")
            await sse.close()
            let ws = try await SSEClient.connectWebSocket(port: port, polls: [poll])
            #expect(try await sse.waitFor { _ in ws.text.contains("subscribed") })
            #expect(ws.text.hasPrefix("HTTP/1.1 101"))
            Self.expectSecurityHeaders(raw: ws.text, "the WebSocket upgrade")
            await ws.close()
        }
    }

    @Test func preflightsAreAnsweredForVoterRoutesOnly() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            let origin: HTTPFields = [.origin: "https://site.example", .accessControlRequestMethod: "POST"]
            let vote = try await server.request(.options, "/v1/polls/\(poll)/votes", headers: origin)
            #expect(vote.status == .noContent)
            #expect(vote.headers[.accessControlAllowOrigin] == "https://site.example")
            #expect(vote.headers[.accessControlAllowHeaders]?.contains("Idempotency-Key") == true)
            #expect(vote.headers[.accessControlMaxAge] == "600")
            // Management: no CORS answer, so a browser on another origin cannot use an API key.
            let create = try await server.request(.options, "/v1/polls", headers: origin)
            #expect(create.headers[.accessControlAllowOrigin] == nil)
            let results = try await server.request(
                .get, "/v1/polls/\(poll)/results", headers: [.origin: "https://site.example"])
            #expect(results.headers[.accessControlAllowOrigin] == "https://site.example")
            #expect(results.headers[.accessControlExposeHeaders]?.contains("ETag") == true)
            #expect(results.headers[values: .vary].contains("Origin"))
            let list = try await server.request(
                .get, "/v1/polls", auth: true, headers: [.origin: "https://site.example"])
            #expect(list.status == .ok)
            #expect(list.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test func aPollsAllowedOriginsDecideWhoMayUseItFromABrowser() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll(
                TestServer.lunch(settings: #"{"allowedOrigins": ["https://good.example"]}"#))
            let good: HTTPFields = [.origin: "https://good.example"]
            let evil: HTTPFields = [.origin: "https://evil.example"]
            let refused = try await server.vote(poll, #"{"voter": "e", "answers": {"q1": ["a"]}}"#, headers: evil)
            #expect(refused.status == .forbidden)
            #expect(refused.errorCode == "origin_not_allowed")
            #expect(
                try await server.vote(poll, #"{"voter": "g", "answers": {"q1": ["a"]}}"#, headers: good).status
                    == .created)
            // Servers and apps send no Origin: the list does not concern them.
            #expect(try await server.vote(poll, #"{"voter": "s", "answers": {"q1": ["b"]}}"#).status == .created)
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            #expect(results["total"] as? Int == 2, "the refused vote was not counted")
            #expect(
                try await server.request(.get, "/v1/polls/\(poll)/results", headers: evil).errorCode
                    == "origin_not_allowed")
            #expect(try await server.request(.get, "/v1/results?polls=\(poll)", headers: evil).status == .forbidden)
            #expect(try await server.request(.get, "/v1/polls/\(poll)", headers: evil).status == .forbidden)
            #expect(try await server.request(.get, "/v1/polls/\(poll)/results", headers: good).status == .ok)

            let port = try #require(server.client.port)
            let sse = try await SSEClient.connect(
                port: port, path: "/v1/polls/\(poll)/live", headers: ["Origin": "https://evil.example"])
            for _ in 0..<200 where !sse.text.contains("\r\n\r\n{") { try await Task.sleep(for: .milliseconds(10)) }
            #expect(sse.text.hasPrefix("HTTP/1.1 403"))
            #expect(sse.text.contains("origin_not_allowed"))
            await sse.close()
            let ws = try await SSEClient.connectWebSocket(
                port: port, polls: [poll], headers: ["Origin": "https://evil.example"])
            for _ in 0..<200 where !ws.text.contains("subscribed") { try await Task.sleep(for: .milliseconds(10)) }
            #expect(ws.text.contains(#""polls":[],"missing":[],"forbidden":["\#(poll)"]"#))
            await ws.close()

            let broken = try await server.request(
                .post, "/v1/polls", json: TestServer.lunch(settings: #"{"allowedOrigins": ["good.example/path"]}"#),
                auth: true)
            #expect(broken.status == .unprocessableContent)
            #expect(
                try broken.object()["error"].flatMap { ($0 as? [String: Any])?["field"] as? String }
                    == "settings.allowedOrigins[0]")
        }
    }

    @Test func bodiesAreCompressedByAcceptEncodingAboveTheThreshold() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            var ballots: [String] = []
            for index in 0..<60 {
                ballots.append(#"{"poll": "\#(poll)", "voter": "v\#(index)", "answers": {"q1": ["a"]}}"#)
            }
            let batch = try await server.request(
                .post, "/v1/votes:batch", json: #"{"ballots": [\#(ballots.joined(separator: ","))]}"#, auth: true)
            #expect(batch.status == .ok)

            let plain = try await server.request(.get, "/v1/polls/\(poll)/export?format=csv", auth: true)
            #expect(plain.headers[.contentEncoding] == nil)
            #expect(plain.body.readableBytes > 1024)
            for (accept, coding, algorithm) in [
                ("gzip, deflate", "gzip", ZlibAlgorithm.gzip), ("gzip;q=0, deflate", "deflate", .zlib),
                ("*", "gzip", .gzip),
            ] {
                let packed = try await server.request(
                    .get, "/v1/polls/\(poll)/export?format=csv", auth: true, headers: [.acceptEncoding: accept])
                #expect(packed.headers[.contentEncoding] == coding, "\(accept)")
                #expect(packed.headers[values: .vary].contains("Accept-Encoding"))
                var body = packed.body
                #expect(body.readableBytes < plain.body.readableBytes / 2)
                let unpacked = try body.decompress(with: algorithm, maxSize: 1 << 20)
                #expect(unpacked == plain.body, "\(accept) round trip")
            }
            #expect(
                try await server.request(
                    .get, "/v1/polls/\(poll)/export?format=csv", auth: true, headers: [.acceptEncoding: "br"]
                ).headers[.contentEncoding] == nil)
            // A small body goes as it is, but says it could vary.
            let small = try await server.request(
                .get, "/v1/polls/\(poll)/results", headers: [.acceptEncoding: "gzip"])
            #expect(small.body.readableBytes < 1024)
            #expect(small.headers[.contentEncoding] == nil)
            #expect(small.headers[values: .vary].contains("Accept-Encoding"))
        }
    }

    /// Beyond the in-flight cap a voter request gets 503 at once; the owners' pool and health
    /// are separate and keep answering.
    @Test func admissionRefusesBeyondTheCapAndKeepsManagementAndHealth() async throws {
        var settings = PollwireSettings()
        settings.admission.maxInFlight = 2
        settings.admission.retryAfterSeconds = 3
        let gate = Gate()
        try await TestServer.run(settings: settings, voteStore: gate.heldStore) { server in
            let poll = try await server.createPoll()
            let (first, second) = try await holdOneVoteAndQueueAnother(server, gate: gate, poll: poll)
            let started = ContinuousClock.now
            let refused = try await server.vote(poll, #"{"voter": "3", "answers": {"q1": ["a"]}}"#)
            #expect(refused.status == .serviceUnavailable)
            #expect(refused.headers[.retryAfter] == "3")
            #expect(refused.errorCode == "overloaded")
            #expect(try await server.request(.get, "/v1/polls/\(poll)/results").status == .serviceUnavailable)
            #expect(ContinuousClock.now - started < .seconds(1))
            #expect(try await server.request(.get, "/v1/polls", auth: true).status == .ok)
            #expect(try await server.request(.get, "/healthz").status == .ok)
            #expect(try await server.request(.get, "/metrics").text.contains("pollwire_admission_refused_total"))
            gate.open()
            #expect(try await first.value.hasPrefix("HTTP/1.1 201"))
            #expect(try await second.value.hasPrefix("HTTP/1.1 201"))
            // Places are given back: the next vote is admitted.
            #expect(try await server.vote(poll, #"{"voter": "4", "answers": {"q1": ["a"]}}"#).status == .created)
        }
    }

    /// With permessage-deflate on and offered, results frames arrive compressed (RSV1) and
    /// inflate to the results JSON; a compressed client message is understood.
    @Test func webSocketsGetPerMessageDeflateWhenTheyOfferIt() async throws {
        var settings = PollwireSettings()
        settings.compression.webSocketDeflate = true
        try await TestServer.run(settings: settings) { server in
            let poll = try await server.createPoll()
            let port = try #require(server.client.port)
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").body

            // The subscribe message, compressed: raw deflate, the sync-flush tail cut off.
            let text = ByteBuffer(string: #"{"type":"subscribe","polls":["\#(poll)"]}"#)
            let compressor = try ZlibCompressor(algorithm: .deflate)
            var input = text
            var packed = ByteBuffer()
            packed.reserveCapacity(compressor.maxSize(from: input))
            try compressor.deflate(from: &input, to: &packed, flush: .sync)
            packed.moveWriterIndex(to: packed.writerIndex - 4)
            var frame = ByteBuffer()
            frame.writeInteger(UInt8(0xC1))  // FIN, RSV1, text
            frame.writeInteger(UInt8(0x80 | packed.readableBytes))
            frame.writeInteger(UInt32(0))
            frame.writeBuffer(&packed)

            let ws = try await SSEClient.connect(
                port: port, path: "/v1/live",
                headers: [
                    "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
                ], after: frame)
            var frames: [(rsv1: Bool, payload: ByteBuffer)] = []
            for _ in 0..<300 {
                frames = Self.frames(ws.receivedBytes.withLock { $0 })
                if frames.count >= 2 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(ws.text.lowercased().contains("sec-websocket-extensions: permessage-deflate"))
            try #require(frames.count >= 2, "\(ws.text)")
            #expect(!frames[0].rsv1)
            #expect(String(buffer: frames[0].payload).contains(#""type":"subscribed""#))
            #expect(frames[1].rsv1)
            var payload = frames[1].payload
            payload.writeBytes([0x00, 0x00, 0xFF, 0xFF])
            let inflater = try ZlibDecompressor(algorithm: .deflate)
            var inflated = ByteBuffer()
            inflated.reserveCapacity(1 << 16)
            try inflater.inflate(from: &payload, to: &inflated)
            #expect(inflated == results)
            await ws.close()

            // Not offered: plain frames.
            let plain = try await SSEClient.connectWebSocket(port: port, polls: [poll])
            for _ in 0..<300 where Self.frames(plain.receivedBytes.withLock { $0 }).count < 2 {
                try await Task.sleep(for: .milliseconds(10))
            }
            let plainFrames = Self.frames(plain.receivedBytes.withLock { $0 })
            #expect(plainFrames.count >= 2)
            #expect(plainFrames.allSatisfy { !$0.rsv1 })
            #expect(!plain.text.lowercased().contains("sec-websocket-extensions"))
            await plain.close()
        }
    }

    /// Server frames (unmasked) after the 101 head.
    static func frames(_ bytes: ByteBuffer) -> [(rsv1: Bool, payload: ByteBuffer)] {
        var buffer = bytes
        guard let end = String(buffer: buffer).range(of: "\r\n\r\n") else { return [] }
        buffer.moveReaderIndex(forwardBy: String(buffer: buffer)[..<end.upperBound].utf8.count)
        var frames: [(Bool, ByteBuffer)] = []
        while let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)
        {
            var header = 2
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let long = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else { break }
                length = Int(long)
                header = 4
            } else if length == 127 {
                break
            }
            guard buffer.readableBytes >= header + length else { break }
            buffer.moveReaderIndex(forwardBy: header)
            frames.append((first & 0x40 != 0, buffer.readSlice(length: length)!))
        }
        return frames
    }
}
