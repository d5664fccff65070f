import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix

/// Request load over keep-alive HTTP/1.1 connections, open loop or closed loop.
///
/// Open loop (`--rate R`): request i is due at start + i/R whatever happened before, and its latency
/// is measured from that due time, not from when a connection was free to send it, so a server
/// that falls behind shows it in the latency instead of slowing the load down (no coordinated
/// omission). Requests go round-robin to the connections; each connection sends one at a time.
/// Closed loop (`--rate 0`): every connection sends its next request when the last one is
/// answered: the most the server takes at that concurrency.
struct RequestLoad {
    struct Request {
        var method: HTTPMethod
        var path: String
        var headers: [(String, String)]
        var body: ByteBuffer?
    }

    /// What was measured: latency per outcome class, counts by status, the server's memory.
    struct Report {
        var accepted = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
        var refused = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
        var statuses: [Int: Int] = [:]
        var failures = 0
        var sent = 0
        var seconds = 0.0
        /// Units of work per accepted response (ballots per batch request).
        var unitsPerRequest = 1
        var rssBefore = 0
        var rssPeak = 0
        var rssAfter = 0
        var cpuSeconds = 0.0

        var acceptedCount: Int { Int(self.accepted.totalCount) }
        var refusedCount: Int { Int(self.refused.totalCount) }

        mutating func record(status: Int, nanos: UInt64) {
            self.statuses[status, default: 0] += 1
            if status < 300 || status == 304 {
                self.accepted.record(max(1, nanos))
            } else {
                self.refused.record(max(1, nanos))
            }
        }

        mutating func merge(_ other: Report) {
            self.accepted.add(other.accepted)
            self.refused.add(other.refused)
            for (status, count) in other.statuses { self.statuses[status, default: 0] += count }
            self.failures += other.failures
            self.sent += other.sent
        }

        static func ms(_ histogram: Histogram<UInt64>, _ percentile: Double) -> Double {
            histogram.totalCount == 0 ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1e6
        }

        func json(scenario: String, extra: [(String, String)] = []) -> String {
            var fields: [(String, String)] = [("scenario", "\"\(scenario)\"")] + extra
            fields += [
                ("sent", "\(self.sent)"), ("accepted", "\(self.acceptedCount)"), ("refused", "\(self.refusedCount)"),
                ("failures", "\(self.failures)"), ("seconds", String(format: "%.3f", self.seconds)),
                ("requests_per_second", String(format: "%.1f", Double(self.acceptedCount) / max(self.seconds, 1e-9))),
                (
                    "units_per_second",
                    String(
                        format: "%.1f",
                        Double(self.acceptedCount * self.unitsPerRequest) / max(self.seconds, 1e-9))
                ),
            ]
            for (name, histogram) in [("accepted", self.accepted), ("refused", self.refused)] {
                for (label, percentile) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)] {
                    fields.append(("\(name)_\(label)_ms", String(format: "%.3f", Self.ms(histogram, percentile))))
                }
                fields.append(("\(name)_max_ms", String(format: "%.3f", Double(histogram.maxRecorded) / 1e6)))
            }
            let statuses = self.statuses.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }
            fields.append(("statuses", "{\(statuses.joined(separator: ","))}"))
            fields += [
                ("rss_before", "\(self.rssBefore)"), ("rss_peak", "\(self.rssPeak)"), ("rss_after", "\(self.rssAfter)"),
                ("server_cpu_seconds", String(format: "%.3f", self.cpuSeconds)),
            ]
            return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }

        func table(scenario: String) -> String {
            var lines = [
                "\(scenario): \(self.sent) sent, \(self.acceptedCount) accepted, \(self.refusedCount) refused, "
                    + "\(self.failures) failed in \(String(format: "%.1f", self.seconds)) s",
                String(
                    format: "throughput: %.0f requests/s (%.0f units/s)",
                    Double(self.acceptedCount) / max(self.seconds, 1e-9),
                    Double(self.acceptedCount * self.unitsPerRequest) / max(self.seconds, 1e-9)),
            ]
            for (name, histogram) in [("accepted", self.accepted), ("refused", self.refused)]
            where histogram.totalCount > 0 {
                lines.append(
                    String(
                        format: "%@ latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", name,
                        Self.ms(histogram, 50), Self.ms(histogram, 90), Self.ms(histogram, 99),
                        Self.ms(histogram, 99.9), Double(histogram.maxRecorded) / 1e6))
            }
            lines.append(
                "statuses: "
                    + self.statuses.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(
                        separator: ", "))
            if self.rssBefore > 0 {
                lines.append(
                    "server RSS: \(self.rssBefore / 1024) KiB before, \(self.rssPeak / 1024) KiB peak, "
                        + "\(self.rssAfter / 1024) KiB after; CPU \(String(format: "%.2f", self.cpuSeconds)) s")
            }
            return lines.joined(separator: "\n")
        }
    }

    let connections: [HTTPConnection]
    let rate: Double
    let duration: Double
    let serverPid: Int32?
    let progress: Bool

    /// Runs the load; `make(i)` builds request i.
    func run(group: MultiThreadedEventLoopGroup, _ make: @escaping @Sendable (Int) -> Request) async throws -> Report {
        let shared = SharedReport()
        let before = self.serverPid.flatMap { ProcessStats(pid: $0) }
        let peak = PeakMemory(pid: self.serverPid)
        let sampler = Task { await peak.sample(every: .milliseconds(100)) }
        let started = ContinuousClock.now
        let startNanos = monotonicNanos()
        let deadline = started + .milliseconds(Int64(self.duration * 1000))
        let progressTask = self.progress ? Task { await Self.printProgress(shared, started: started) } : nil
        if self.rate > 0 {
            let interval = 1e9 / self.rate
            let total = Int(self.rate * self.duration)
            // Issue in 1 ms slices: every request due by now goes out, stamped with its due time.
            var next = 0
            while next < total {
                let now = monotonicNanos() - startNanos
                while next < total, UInt64(Double(next) * interval) <= now {
                    let due = startNanos + UInt64(Double(next) * interval)
                    let connection = self.connections[next % self.connections.count]
                    let request = make(next)
                    shared.sent()
                    connection.send(
                        method: request.method, path: request.path, headers: request.headers, body: request.body
                    )
                    .whenComplete { result in
                        let nanos = monotonicNanos() &- due
                        switch result {
                        case .success(let response): shared.record(status: response.status, nanos: nanos)
                        case .failure: shared.failed()
                        }
                    }
                    next += 1
                }
                try await Task.sleep(for: .milliseconds(1))
            }
            // Wait for the answers still due, bounded.
            let drain = ContinuousClock.now + .seconds(30)
            while shared.outstanding > 0, ContinuousClock.now < drain { try await Task.sleep(for: .milliseconds(10)) }
        } else {
            await withTaskGroup(of: Void.self) { tasks in
                for (index, connection) in self.connections.enumerated() {
                    tasks.addTask {
                        var counter = index
                        while ContinuousClock.now < deadline {
                            let request = make(counter)
                            counter += self.connections.count
                            shared.sent()
                            let sentAt = monotonicNanos()
                            do {
                                let response = try await connection.send(
                                    method: request.method, path: request.path, headers: request.headers,
                                    body: request.body
                                ).get()
                                shared.record(status: response.status, nanos: monotonicNanos() &- sentAt)
                            } catch {
                                shared.failed()
                                return
                            }
                        }
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        progressTask?.cancel()
        sampler.cancel()
        var report = shared.report
        report.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        report.rssBefore = before?.residentBytes ?? 0
        let after = self.serverPid.flatMap { ProcessStats(pid: $0) }
        report.rssAfter = after?.residentBytes ?? 0
        report.rssPeak = max(peak.value, report.rssAfter)
        report.cpuSeconds = (after?.cpuSeconds ?? 0) - (before?.cpuSeconds ?? 0)
        return report
    }

    static func printProgress(_ shared: SharedReport, started: ContinuousClock.Instant) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let report = shared.report
            let elapsed = ContinuousClock.now - started
            FileHandle.standardError.write(
                Data(
                    "[\(elapsed.components.seconds) s] sent \(report.sent), accepted \(report.acceptedCount), refused \(report.refusedCount), failed \(report.failures)\n"
                        .utf8))
        }
    }
}

/// The report, shared by the response callbacks.
final class SharedReport: @unchecked Sendable {
    private let lock = NSLock()
    private var value = RequestLoad.Report()
    private var pending = 0

    func sent() {
        self.lock.withLock {
            self.value.sent += 1; self.pending += 1
        }
    }

    func record(status: Int, nanos: UInt64) {
        self.lock.withLock {
            self.value.record(status: status, nanos: nanos)
            self.pending -= 1
        }
    }

    func failed() {
        self.lock.withLock {
            self.value.failures += 1; self.pending -= 1
        }
    }

    var outstanding: Int { self.lock.withLock { self.pending } }
    var report: RequestLoad.Report { self.lock.withLock { self.value } }
}

/// The server's highest resident memory, sampled.
final class PeakMemory: @unchecked Sendable {
    private let lock = NSLock()
    private var peak = 0
    let pid: Int32?

    init(pid: Int32?) { self.pid = pid }

    var value: Int { self.lock.withLock { self.peak } }

    func sample(every interval: Duration) async {
        guard let pid else { return }
        while !Task.isCancelled {
            if let stats = ProcessStats(pid: pid) {
                self.lock.withLock { self.peak = max(self.peak, stats.residentBytes) }
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Options of the request scenarios.
struct LoadOptions: ParsableArguments {
    @OptionGroup var server: ServerOptions
    @Option(help: "Requests per second, open loop; 0 for closed loop (as fast as answered).") var rate = 0.0
    @Option(help: "Seconds of load.") var duration = 10.0
    @Option(help: "Keep-alive connections.") var connections = 64
    @Option(help: "Loopback source addresses to spread connections over (127.0.0.1 ... 127.0.0.N).") var sources = 1
    @Option(help: "Client event loop threads.") var threads = 1
    @Option(help: "Poll to use; by default a new one is created.") var poll: String?
    @Flag(help: "A progress line on standard error every second.") var progress = false

    func connect(group: MultiThreadedEventLoopGroup) async throws -> [HTTPConnection] {
        var connections: [HTTPConnection] = []
        let sources = max(1, min(self.sources, 250))
        for index in 0..<max(1, self.connections) {
            connections.append(
                try await HTTPConnection.connect(
                    host: self.server.host, port: self.server.port, group: group,
                    source: "127.0.0.\(index % sources + 1)"))
        }
        return connections
    }

    func pollID(group: MultiThreadedEventLoopGroup) async throws -> String {
        if let poll { return poll }
        return try await self.newPoll(group: group)
    }

    func newPoll(group: MultiThreadedEventLoopGroup) async throws -> String {
        let admin = try await HTTPConnection.connect(host: self.server.host, port: self.server.port, group: group)
        defer { admin.channel.close(promise: nil) }
        return try await createPoll(admin, key: self.server.key)
    }

    func load(_ connections: [HTTPConnection]) -> RequestLoad {
        RequestLoad(
            connections: connections, rate: self.rate, duration: self.duration, serverPid: self.server.serverPid,
            progress: self.progress)
    }
}

struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Votes: single-vote requests, or batch requests of --batch ballots (durable acknowledgements).")

    @OptionGroup var options: LoadOptions
    @Option(help: "Ballots per request: 1 sends POST /v1/polls/{id}/votes, more sends POST /v1/votes:batch.")
    var batch = 1
    @Option(help: "New polls to spread the votes over, request by request (the default 1: one hot poll).")
    var polls = 1

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.options.threads)
        var created = [try await self.options.pollID(group: group)]
        while created.count < self.polls { created.append(try await self.options.newPoll(group: group)) }
        let pollIDs = created
        let connections = try await self.options.connect(group: group)
        let batch = max(1, self.batch)
        let key = self.options.server.key
        var report = try await self.options.load(connections).run(group: group) { index in
            let pollID = pollIDs[index % pollIDs.count]
            if batch == 1 {
                return .init(
                    method: .POST, path: "/v1/polls/\(pollID)/votes", headers: [("Content-Type", "application/json")],
                    body: ByteBuffer(string: #"{"answers":{"q1":["\#(index % 3 == 0 ? "b" : "a")"]}}"#))
            }
            var body = "{\"ballots\":["
            for ballot in 0..<batch {
                if ballot > 0 { body += "," }
                body += #"{"poll":"\#(pollID)","answers":{"q1":["\#(ballot % 3 == 0 ? "b" : "a")"]}}"#
            }
            body += "]}"
            return .init(
                method: .POST, path: "/v1/votes:batch",
                headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
                body: ByteBuffer(string: body))
        }
        report.unitsPerRequest = batch
        let extra = [
            ("batch", "\(batch)"), ("rate", "\(self.options.rate)"), ("connections", "\(connections.count)"),
            ("polls", "\(pollIDs.count)"),
        ]
        print(
            self.options.server.json ? report.json(scenario: "ingest", extra: extra) : report.table(scenario: "ingest"))
        for connection in connections { connection.channel.close(promise: nil) }
        try await group.shutdownGracefully()
    }
}

struct Read: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Results reads: GET /v1/polls/{id}/results, or with If-None-Match (304s).")

    @OptionGroup var options: LoadOptions
    @Flag(help: "Send the current ETag in If-None-Match: every answer is a 304.") var revalidate = false

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.options.threads)
        let pollID = try await self.options.pollID(group: group)
        let connections = try await self.options.connect(group: group)
        var headers: [(String, String)] = []
        if self.revalidate {
            let first = try await connections[0].send(
                method: .GET, path: "/v1/polls/\(pollID)/results", headers: [], body: nil
            ).get()
            guard let etag = first.headers["ETag"] else { throw ValidationError("no ETag on the results") }
            headers.append(("If-None-Match", etag))
        }
        let path = "/v1/polls/\(pollID)/results"
        let fixed = headers
        let report = try await self.options.load(connections).run(group: group) { _ in
            .init(method: .GET, path: path, headers: fixed, body: nil)
        }
        let extra = [("revalidate", "\(self.revalidate)"), ("rate", "\(self.options.rate)")]
        print(self.options.server.json ? report.json(scenario: "read", extra: extra) : report.table(scenario: "read"))
        for connection in connections { connection.channel.close(promise: nil) }
        try await group.shutdownGracefully()
    }
}

struct Mixed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Votes and results reads at once (open loop each), optionally with live WebSocket viewers.")

    @OptionGroup var server: ServerOptions
    @Option(help: "Single-vote requests per second.") var voteRate = 2000.0
    @Option(help: "Results reads per second.") var readRate = 5000.0
    @Option(help: "Live WebSocket viewers of the same poll.") var viewers = 0
    @Option(help: "Seconds of load.") var duration = 10.0
    @Option(help: "Keep-alive connections for each of votes and reads.") var connections = 32

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let admin = try await HTTPConnection.connect(host: self.server.host, port: self.server.port, group: group)
        let pollID = try await createPoll(admin, key: self.server.key)
        let stats = ViewerStats(group: group)
        let channels = try await connectViewers(
            count: self.viewers, transport: .ws, host: self.server.host, port: self.server.port, pollID: pollID,
            sources: ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"], group: group,
            ackTimes: AckTimes(capacity: 1), stats: stats)
        _ = try await waitForViewers(stats, group: group, count: channels.count, timeout: .seconds(120))
        try await stats.resetLatency(group: group)
        var voteConnections: [HTTPConnection] = []
        var readConnections: [HTTPConnection] = []
        for _ in 0..<max(1, self.connections) {
            voteConnections.append(
                try await HTTPConnection.connect(host: self.server.host, port: self.server.port, group: group))
            readConnections.append(
                try await HTTPConnection.connect(host: self.server.host, port: self.server.port, group: group))
        }
        let votes = RequestLoad(
            connections: voteConnections, rate: self.voteRate, duration: self.duration,
            serverPid: self.server.serverPid,
            progress: false)
        let reads = RequestLoad(
            connections: readConnections, rate: self.readRate, duration: self.duration, serverPid: nil, progress: false)
        async let voteReport = votes.run(group: group) { index in
            .init(
                method: .POST, path: "/v1/polls/\(pollID)/votes", headers: [("Content-Type", "application/json")],
                body: ByteBuffer(string: #"{"answers":{"q1":["\#(index % 3 == 0 ? "b" : "a")"]}}"#))
        }
        async let readReport = reads.run(group: group) { _ in
            .init(method: .GET, path: "/v1/polls/\(pollID)/results", headers: [], body: nil)
        }
        let (voted, read) = try await (voteReport, readReport)
        let totals = try await stats.totals(group: group)
        if self.server.json {
            print(
                #"{"scenario":"mixed","votes":\#(voted.json(scenario: "votes")),"reads":\#(read.json(scenario: "reads")),"#
                    + #""viewers":\#(totals.ready),"deliveries":\#(totals.frames)}"#)
        } else {
            print(voted.table(scenario: "mixed: votes"))
            print(read.table(scenario: "mixed: reads"))
            if self.viewers > 0 { print("viewers: \(totals.ready), deliveries: \(totals.frames)") }
        }
        for channel in channels { channel.close(promise: nil) }
        for connection in voteConnections + readConnections { connection.channel.close(promise: nil) }
        try await group.shutdownGracefully()
    }
}
