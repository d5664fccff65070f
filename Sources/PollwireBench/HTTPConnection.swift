import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection that sends requests one after another (a queue, no
/// pipelining) and completes each with its status and body.
final class HTTPConnection: @unchecked Sendable {
    let channel: any Channel
    private let handler: ResponseHandler

    struct Response {
        var status: Int
        var body: ByteBuffer
        var headers: [String: String] = [:]
    }

    private init(channel: any Channel, handler: ResponseHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(
        host: String, port: Int, group: any EventLoopGroup, source: String? = nil
    ) async throws -> HTTPConnection {
        let handler = ResponseHandler()
        var bootstrap = ClientBootstrap(group: group)
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        let channel =
            try await bootstrap
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.pipeline.addHTTPClientHandlers().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        return HTTPConnection(channel: channel, handler: handler)
    }

    /// Sends a request; the future completes with the response.
    func send(
        method: HTTPMethod, path: String, headers: [(String, String)], body: ByteBuffer?
    ) -> EventLoopFuture<Response> {
        let promise = self.channel.eventLoop.makePromise(of: Response.self)
        self.channel.eventLoop.execute {
            self.handler.enqueue(
                .init(method: method, path: path, headers: headers, body: body, promise: promise), channel: self.channel
            )
        }
        return promise.futureResult
    }

    final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundOut = HTTPClientRequestPart

        struct Pending {
            var method: HTTPMethod
            var path: String
            var headers: [(String, String)]
            var body: ByteBuffer?
            var promise: EventLoopPromise<Response>
        }

        private var queue: [Pending] = []
        private var inFlight: Pending?
        private var status = 0
        private var body = ByteBuffer()
        private var headers: [String: String] = [:]

        func enqueue(_ request: Pending, channel: any Channel) {
            self.queue.append(request)
            self.sendNext(channel: channel)
        }

        private func sendNext(channel: any Channel) {
            guard self.inFlight == nil, !self.queue.isEmpty else { return }
            let request = self.queue.removeFirst()
            self.inFlight = request
            var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path)
            head.headers.add(name: "Host", value: "bench")
            for (name, value) in request.headers { head.headers.add(name: name, value: value) }
            if let body = request.body { head.headers.add(name: "Content-Length", value: String(body.readableBytes)) }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body = request.body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head):
                self.status = Int(head.status.code)
                self.body.clear()
                self.headers = [:]
                for (name, value) in head.headers where name.lowercased() == "etag" { self.headers["ETag"] = value }
            case .body(var part):
                self.body.writeBuffer(&part)
            case .end:
                let request = self.inFlight
                self.inFlight = nil
                request?.promise.succeed(Response(status: self.status, body: self.body, headers: self.headers))
                self.sendNext(channel: context.channel)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.inFlight?.promise.fail(ChannelError.ioOnClosedChannel)
            for request in self.queue { request.promise.fail(ChannelError.ioOnClosedChannel) }
            self.queue.removeAll()
            self.inFlight = nil
        }
    }
}
