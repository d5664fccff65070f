import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Tells a CDN or caching proxy that a poll's results changed: `PURGE` (or `BAN`) to
/// `purge.url` with `{poll}` replaced, carrying `Surrogate-Key: poll-<id>`. Coalesced: changes
/// are collected and sent once per `purge.interval`, one request per changed poll, so a poll
/// taking 10,000 votes a second costs the cache one purge a second.
///
/// Bounded: at most `maxPending` polls wait; further changes are dropped and counted
/// (`pollwire_purge_dropped_total`): the cache then serves them until their `s-maxage` ends.
/// Plain HTTP only, one short connection per request, 2 s timeout; failures are counted, not
/// retried (the next change purges again, and `s-maxage` bounds staleness anyway).
final class CachePurger: Service, Sendable {
    struct Target: Sendable {
        let host: String
        let port: Int
        /// The path and query, with `{poll}` where the poll id goes.
        let pathTemplate: String

        init?(_ url: String) {
            guard let components = URLComponents(string: url), components.scheme == "http",
                let host = components.host
            else { return nil }
            self.host = host
            self.port = components.port ?? 80
            let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
            let template = components.percentEncodedQuery.map { "\(path)?\($0)" } ?? path
            self.pathTemplate = template.replacingOccurrences(of: "%7Bpoll%7D", with: "{poll}")
        }
    }

    let target: Target
    let settings: PurgeSettings
    private let pending = Mutex<Set<String>>([])
    private let logger: Logger
    private let sent: Counter
    private let failed: Counter
    private let dropped: Counter
    static let concurrency = 8

    init?(settings: PurgeSettings, logger: Logger, factory: any MetricsFactory) {
        guard let url = settings.url, let target = Target(url) else { return nil }
        self.target = target
        self.settings = settings
        self.logger = logger
        self.sent = Counter(label: "pollwire_purge_requests_total", dimensions: [("result", "ok")], factory: factory)
        self.failed = Counter(
            label: "pollwire_purge_requests_total", dimensions: [("result", "failed")], factory: factory)
        self.dropped = Counter(label: "pollwire_purge_dropped_total", factory: factory)
    }

    /// Marks polls changed (any thread): purged on the next tick.
    func changed(_ pollIDs: some Sequence<String>) {
        var drops = 0
        self.pending.withLock { pending in
            for id in pollIDs where !pending.contains(id) {
                if pending.count < self.settings.maxPending { pending.insert(id) } else { drops += 1 }
            }
        }
        if drops > 0 { self.dropped.increment(by: drops) }
    }

    func run() async throws {
        let clock = ContinuousClock()
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await clock.sleep(for: self.settings.interval)
            } catch {
                break
            }
            let batch = self.pending.withLock { pending in
                defer { pending.removeAll(keepingCapacity: true) }
                return Array(pending)
            }
            await self.purge(batch)
        }
    }

    /// One request per poll, `concurrency` at a time.
    func purge(_ pollIDs: [String]) async {
        await withTaskGroup(of: Bool.self) { group in
            var next = pollIDs.makeIterator()
            func add() -> Bool {
                guard let id = next.next() else { return false }
                group.addTask { await self.send(pollID: id) }
                return true
            }
            for _ in 0..<Self.concurrency where !add() { break }
            while let ok = await group.next() {
                if ok { self.sent.increment() } else { self.failed.increment() }
                _ = add()
            }
        }
    }

    /// Sends one purge and waits for its status line; true for a 2xx or 404 (nothing cached).
    func send(pollID: String) async -> Bool {
        let encoded = pollID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? pollID
        let path = self.target.pathTemplate.replacingOccurrences(of: "{poll}", with: encoded)
        let request =
            "\(self.settings.method) \(path) HTTP/1.1\r\nHost: \(self.target.host):\(self.target.port)\r\n"
            + "Surrogate-Key: poll-\(pollID)\r\nContent-Length: 0\r\nConnection: close\r\n"
            + "User-Agent: pollwire\r\n\r\n"
        do {
            let status = try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask { try await self.exchange(request) }
                group.addTask {
                    try await Task.sleep(for: .seconds(2))
                    throw CancellationError()
                }
                defer { group.cancelAll() }
                return try await group.next() ?? 0
            }
            if (200..<300).contains(status) || status == 404 { return true }
            self.logger.debug("purge refused", metadata: ["poll": "\(pollID)", "status": "\(status)"])
            return false
        } catch {
            self.logger.debug("purge failed", metadata: ["poll": "\(pollID)", "error": "\(error)"])
            return false
        }
    }

    private func exchange(_ request: String) async throws -> Int {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: self.target.host, port: self.target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var head = ""
            for try await var chunk in inbound {
                head += chunk.readString(length: chunk.readableBytes) ?? ""
                if let line = head.split(separator: "\r\n", maxSplits: 1).first, head.contains("\r\n") {
                    let parts = line.split(separator: " ")
                    return parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
                }
                if head.utf8.count > 8192 { break }
            }
            return 0
        }
    }
}
