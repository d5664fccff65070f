import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix

/// `pollwire-bench`: load generator for Pollwire.
///
/// - `ingest`: votes, single or in batches, open loop at a rate or closed loop; latency (HDR).
/// - `read`: results reads, with or without If-None-Match.
/// - `mixed`: votes and reads at once, open loop, optionally with live viewers.
/// - `idle`: opens N live viewers and reports the server's resident memory per viewer.
/// - `fanout`: N live viewers while votes flow at a fixed rate (open loop); reports deliveries
///   per second, server CPU per 1000 deliveries, and vote acknowledged -> viewer received latency.
/// - `fuzz`: seeded raw HTTP inputs, one connection each: no crash, hang, 5xx or descriptor left.
/// - `slowloris`: a normal client's latency alone and beside connections that trickle their heads.
@main
struct PollwireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pollwire-bench", abstract: "Load generator for Pollwire.",
        subcommands: [
            Ingest.self, Read.self, Mixed.self, Idle.self, Fanout.self, Fuzz.self, Slowloris.self, FraudEval.self,
        ])
}

/// The server under load, and how to report: shared by every scenario.
struct ServerOptions: ParsableArguments {
    @Option(help: "Server host (loopback only).") var host = "127.0.0.1"
    @Option(help: "Server port.") var port: Int
    @Option(help: "Server process id, to read its memory and CPU from /proc.") var serverPid: Int32?
    @Option(help: "API key, to create the benchmark poll and send batch votes.") var key: String
    @Flag(help: "Print one JSON object instead of the table.") var json = false
}

struct Target: ParsableArguments {
    @OptionGroup var server: ServerOptions
    @Option(help: "Live transport: ws, ws-deflate, sse or socketio.") var transport: Transport = .ws
    @Option(help: "Number of live viewers.") var viewers = 1000
    @Option(help: "Loopback source addresses to spread viewers over (127.0.0.1 ... 127.0.0.N).") var sources = 4
    @Option(help: "Client event loop threads.") var threads = 1

    var sourceAddresses: [String] { (1...max(1, min(self.sources, 250))).map { "127.0.0.\($0)" } }
}

extension Transport: ExpressibleByArgument {}

/// Creates an open poll with one single-choice question and no dedupe; returns its id.
func createPoll(_ connection: HTTPConnection, key: String) async throws -> String {
    let body =
        #"{"title":"bench","questions":[{"id":"q1","kind":"single","prompt":"?","options":[{"id":"a","label":"A"},{"id":"b","label":"B"}]}],"settings":{"dedupe":"none"}}"#
    let response = try await connection.send(
        method: .POST, path: "/v1/polls",
        headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
        body: ByteBuffer(string: body)
    ).get()
    guard response.status == 201,
        let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any],
        let id = object["id"] as? String
    else { throw ValidationError("could not create the poll: \(response.status) \(String(buffer: response.body))") }
    return id
}

func waitForViewers(
    _ stats: ViewerStats, group: MultiThreadedEventLoopGroup, count: Int, timeout: Duration
) async throws -> Int {
    let deadline = ContinuousClock.now + timeout
    var ready = 0
    while ContinuousClock.now < deadline {
        ready = try await stats.totals(group: group).ready
        if ready >= count { break }
        try await Task.sleep(for: .milliseconds(200))
    }
    return ready
}

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resident memory of the server per idle live viewer.")

    @OptionGroup var target: Target
    @Option(help: "Seconds to hold the viewers open after measuring.") var hold = 1.0

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.target.threads)
        let admin = try await HTTPConnection.connect(
            host: self.target.server.host, port: self.target.server.port, group: group)
        let pollID = try await createPoll(admin, key: self.target.server.key)
        let before = self.target.server.serverPid.flatMap { ProcessStats(pid: $0) }
        let stats = ViewerStats(group: group)
        let channels = try await connectViewers(
            count: self.target.viewers, transport: self.target.transport, host: self.target.server.host,
            port: self.target.server.port,
            pollID: pollID, sources: self.target.sourceAddresses, group: group, ackTimes: AckTimes(capacity: 1),
            stats: stats)
        let ready = try await waitForViewers(stats, group: group, count: channels.count, timeout: .seconds(120))
        try await Task.sleep(for: .seconds(2))
        let after = self.target.server.serverPid.flatMap { ProcessStats(pid: $0) }
        let perViewer = before.flatMap { before in
            after.map { Double($0.residentBytes - before.residentBytes) / Double(max(1, ready)) }
        }
        if self.target.server.json {
            print(
                #"{"scenario":"idle","transport":"\#(self.target.transport.rawValue)","viewers":\#(ready),"#
                    + #""rss_before":\#(before?.residentBytes ?? 0),"rss_after":\#(after?.residentBytes ?? 0),"#
                    + #""bytes_per_viewer":\#(Int(perViewer ?? 0))}"#)
        } else {
            print("idle \(self.target.transport.rawValue) viewers ready: \(ready) of \(self.target.viewers)")
            if let before, let after, let perViewer {
                print("server RSS: \(before.residentBytes / 1024) KiB -> \(after.residentBytes / 1024) KiB")
                print(String(format: "bytes per idle viewer: %.0f", perViewer))
            }
        }
        try await Task.sleep(for: .seconds(self.hold))
        for channel in channels { channel.close(promise: nil) }
        try await Task.sleep(for: .milliseconds(500))
        try await group.shutdownGracefully()
    }
}

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Live viewers while votes flow at a fixed rate: deliveries and vote -> viewer latency.")

    @OptionGroup var target: Target
    @Option(help: "Votes per second (open loop, sent as batch requests every 10 ms).") var rate = 1000.0
    @Option(help: "Seconds of voting.") var duration = 10.0
    @Option(help: "Connections for sending votes.") var voteConnections = 4
    @Option(help: "Port the viewers connect to, when not --port: another cluster node, for cross-node latency.")
    var viewerPort: Int?
    @Option(help: "Polls: viewers watch them in turn, and each batch's ballots go to the next ones in turn.")
    var polls = 1

    /// The number after each `"version":` in `bytes`, in order.
    static func versions(_ bytes: UnsafeRawBufferPointer) -> [Int] {
        let marker = Array("\"version\":".utf8)
        var versions: [Int] = []
        var index = 0
        while index + marker.count <= bytes.count {
            guard (0..<marker.count).allSatisfy({ bytes[index + $0] == marker[$0] }) else {
                index += 1
                continue
            }
            index += marker.count
            var version = 0
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                version = version * 10 + Int(bytes[index] - 48)
                index += 1
            }
            versions.append(version)
        }
        return versions
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.target.threads)
        let admin = try await HTTPConnection.connect(
            host: self.target.server.host, port: self.target.server.port, group: group)
        var pollIDs: [String] = []
        for _ in 0..<max(1, self.polls) { pollIDs.append(try await createPoll(admin, key: self.target.server.key)) }
        let tick = Duration.milliseconds(10)
        let ticks = Int(self.duration * 100)
        let perTick = max(1, Int((self.rate / 100).rounded()))
        // Each poll's versions, acknowledged: at most one per ballot it gets.
        let ackTimes = pollIDs.map { _ in AckTimes(capacity: ticks * perTick / pollIDs.count + 16) }
        let stats = ViewerStats(group: group)
        let channels = try await connectViewers(
            count: self.target.viewers, transport: self.target.transport, host: self.target.server.host,
            port: self.viewerPort ?? self.target.server.port, polls: Array(zip(pollIDs, ackTimes)),
            sources: self.target.sourceAddresses, group: group, stats: stats)
        let ready = try await waitForViewers(stats, group: group, count: channels.count, timeout: .seconds(120))
        try await stats.resetLatency(group: group)

        // Votes go out from their own thread, so acknowledgements are timed when they arrive,
        // not when the viewers' loop gets round to them.
        let voteGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var senders: [HTTPConnection] = []
        for _ in 0..<max(1, self.voteConnections) {
            senders.append(
                try await HTTPConnection.connect(
                    host: self.target.server.host, port: self.target.server.port, group: voteGroup))
        }
        let acked = ManagedCounter()
        let before = self.target.server.serverPid.flatMap { ProcessStats(pid: $0) }
        let started = ContinuousClock.now
        let headers = [("Authorization", "Bearer \(self.target.server.key)"), ("Content-Type", "application/json")]
        for index in 0..<ticks {
            try await Task.sleep(until: started.advanced(by: tick * index), clock: .continuous)
            // Ballot b of tick i goes to poll (i * perTick + b) % polls: with more polls than a
            // tick's ballots each tick's batch reaches as many polls as it has ballots.
            let polls = (0..<perTick).map { (index * perTick + $0) % pollIDs.count }
            var body = "{\"ballots\":["
            for (ballot, poll) in polls.enumerated() {
                if ballot > 0 { body += "," }
                body += #"{"poll":"\#(pollIDs[poll])","answers":{"q1":["\#(ballot % 3 == 0 ? "b" : "a")"]}}"#
            }
            body += "]}"
            senders[index % senders.count].send(
                method: .POST, path: "/v1/votes:batch", headers: headers, body: ByteBuffer(string: body)
            ).whenSuccess { response in
                let now = monotonicNanos()
                guard response.status == 200 else { return }
                // One result per ballot, in order, each with the version that first holds it.
                // Scanned over raw bytes, as the SSE viewers are (see `LiveViewerHandler.eventID`).
                let versions = response.body.withUnsafeReadableBytes(Self.versions)
                for (ballot, version) in zip(polls, versions) {
                    ackTimes[ballot].record(version: version, at: now)
                }
                acked.add(perTick)
            }
        }
        let sending = ContinuousClock.now - started
        try await Task.sleep(for: .seconds(1))
        let after = self.target.server.serverPid.flatMap { ProcessStats(pid: $0) }
        let elapsed = ContinuousClock.now - started
        let totals = try await stats.totals(group: group)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = before.flatMap { before in after.map { $0.cpuSeconds - before.cpuSeconds } }
        let latency = totals.latency
        func ms(_ percentile: Double) -> Double { Double(latency.valueAtPercentile(percentile)) / 1e6 }
        let windows = totals.windowLatency
        func windowMs(_ percentile: Double) -> Double { Double(windows.valueAtPercentile(percentile)) / 1e6 }
        let deliveriesPerSecond = Double(totals.frames) / seconds
        let cpuPerThousand = cpu.map { $0 / Double(max(1, totals.frames)) * 1000 }
        if self.target.server.json {
            print(
                #"{"scenario":"fanout","transport":"\#(self.target.transport.rawValue)","viewers":\#(ready),"#
                    + #""polls":\#(pollIDs.count),"#
                    + #""rate":\#(self.rate),"acked_votes":\#(acked.value),"deliveries":\#(totals.frames),"#
                    + #""deliveries_per_second":\#(Int(deliveriesPerSecond)),"server_cpu_seconds":\#(cpu ?? 0),"#
                    + #""cpu_seconds_per_1000_deliveries":\#(cpuPerThousand ?? 0),"#
                    + #""p50_ms":\#(ms(50)),"p90_ms":\#(ms(90)),"p99_ms":\#(ms(99)),"p999_ms":\#(ms(99.9)),"#
                    + #""max_ms":\#(Double(latency.maxRecorded) / 1e6),"#
                    + #""closed":\#(totals.closed),"sending_seconds":\#(Double(sending.components.seconds)),"#
                    + #""window_events":\#(windows.totalCount),"window_p50_ms":\#(windowMs(50)),"#
                    + #""window_p99_ms":\#(windowMs(99)),"window_max_ms":\#(Double(windows.maxRecorded) / 1e6)}"#)
        } else {
            print(
                "fanout \(self.target.transport.rawValue): \(ready) viewers, \(self.rate) votes/s for \(self.duration) s"
            )
            print("acknowledged votes: \(acked.value); deliveries: \(totals.frames) (\(Int(deliveriesPerSecond))/s)")
            if let cpu, let cpuPerThousand {
                print(String(format: "server CPU: %.2f s (%.4f s per 1000 deliveries)", cpu, cpuPerThousand))
            }
            print(
                String(
                    format:
                        "vote ack -> viewer receipt: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms",
                    ms(50), ms(90), ms(99), ms(99.9), Double(latency.maxRecorded) / 1e6))
            if totals.closed > 0 { print("viewers closed by the server: \(totals.closed)") }
            if windows.totalCount > 0 {
                print(
                    String(
                        format: "window end -> viewer receipt: %d events, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                        windows.totalCount, windowMs(50), windowMs(99), Double(windows.maxRecorded) / 1e6))
            }
        }
        for channel in channels { channel.close(promise: nil) }
        try await Task.sleep(for: .milliseconds(500))
        try await voteGroup.shutdownGracefully()
        try await group.shutdownGracefully()
    }
}

/// A counter the vote callbacks share.
final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ amount: Int) { self.lock.withLock { self.count += amount } }
    var value: Int { self.lock.withLock { self.count } }
}
