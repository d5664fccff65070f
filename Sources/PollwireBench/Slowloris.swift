import ArgumentParser
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `pollwire-bench slowloris`: a well-behaved client's latency alone, then while `--slow`
/// connections trickle their heads a byte at a time (reopened as the server cuts them, as an
/// attacker would). Reports both p50/p99, the ratio, and how long the server let a slow
/// connection live. Loopback only; bounded by `--seconds`.
struct Slowloris: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A normal client's latency alone and beside many connections that trickle their heads.")

    @Option(help: "Server port (127.0.0.1).") var port: Int
    @Option(help: "Path the normal client reads.") var path = "/healthz"
    @Option(help: "Slow connections.") var slow = 1000
    @Option(help: "Milliseconds between two bytes of one slow connection.") var trickleMs = 1000
    @Option(help: "Seconds of each phase (alone, then under attack).") var seconds = 10.0
    @Option(help: "Loopback source addresses for the slow connections.") var sources = 8
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "Fail (exit 1) when the p99 under attack exceeds this multiple of the p99 alone.")
    var maxP99Ratio: Double?

    func run() throws {
        let request = Array("GET \(self.path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let alone = try Self.measure(port: self.port, request: request, seconds: self.seconds)
        let attack = Attack()
        let (port, slow, trickle, sources) = (self.port, self.slow, self.trickleMs, max(1, min(self.sources, 250)))
        let attacker = Thread {
            Self.attack(port: port, count: slow, trickle: trickle, sources: sources, state: attack)
        }
        attacker.start()
        Thread.sleep(forTimeInterval: 1)  // the slow connections are open and trickling
        let attacked = try Self.measure(port: self.port, request: request, seconds: self.seconds)
        attack.stop.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: Double(self.trickleMs) / 1000 + 0.5)
        let cut = attack.lifetimes.withLock { $0.sorted() }
        let ratio = attacked.p99 / max(alone.p99, 0.000_001)
        let median = cut.isEmpty ? 0 : cut[cut.count / 2]
        if self.json {
            print(
                #"{"aloneP50Ms": \#(alone.p50 * 1000), "aloneP99Ms": \#(alone.p99 * 1000), "#
                    + #""attackedP50Ms": \#(attacked.p50 * 1000), "attackedP99Ms": \#(attacked.p99 * 1000), "#
                    + #""p99Ratio": \#(ratio), "slowCut": \#(cut.count), "slowLifetimeMedianS": \#(median)}"#)
        } else {
            print(
                String(
                    format:
                        "slowloris: alone p50 %.2f ms p99 %.2f ms (%d requests); with %d slow connections p50 %.2f ms p99 %.2f ms (%d requests): p99 %.2fx; %d slow connections cut, median lifetime %.1f s",
                    alone.p50 * 1000, alone.p99 * 1000, alone.count, self.slow, attacked.p50 * 1000,
                    attacked.p99 * 1000, attacked.count, ratio, cut.count, median))
        }
        if let limit = self.maxP99Ratio, ratio > limit {
            print(String(format: "slowloris: FAILED: p99 %.2fx its p99 alone (limit %.1fx)", ratio, limit))
            throw ExitCode.failure
        }
    }

    /// What the attacking thread shares with the command.
    final class Attack: Sendable {
        let stop = Atomic<Bool>(false)
        /// Seconds each slow connection lived until the server cut it.
        let lifetimes = Mutex<[Double]>([])
    }

    struct Latencies {
        var p50: Double
        var p99: Double
        var count: Int
    }

    /// One keep-alive connection, one request after another for `seconds`.
    static func measure(port: Int, request: [UInt8], seconds: Double) throws -> Latencies {
        var fd = try LoopbackSocket.connect(port: port, source: "127.0.0.1")
        var samples: [Double] = []
        let end = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while Date() < end {
            let started = DispatchTime.now().uptimeNanoseconds
            if !Self.exchange(fd, request, &buffer) {
                close(fd)
                fd = try LoopbackSocket.connect(port: port, source: "127.0.0.1")
                continue
            }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        }
        close(fd)
        samples.sort()
        guard !samples.isEmpty else { throw ValidationError("no request was answered") }
        return Latencies(
            p50: samples[samples.count / 2], p99: samples[min(samples.count - 1, samples.count * 99 / 100)],
            count: samples.count)
    }

    /// Sends `request` and reads one response with a Content-Length body.
    static func exchange(_ fd: Int32, _ request: [UInt8], _ buffer: inout [UInt8]) -> Bool {
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else { return false }
        var received: [UInt8] = []
        let separator = Array("\r\n\r\n".utf8)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return false }
            received += buffer[..<count]
            guard let end = received.firstRange(of: separator)?.upperBound else { continue }
            let head = String(decoding: received[..<end], as: UTF8.self).lowercased()
            let length =
                head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            if received.count >= end + length { return true }
        }
    }

    /// Keeps `count` connections trickling a never-ending head, reopening each one the server
    /// closes, until `stop`; records how long each cut connection lived.
    static func attack(port: Int, count: Int, trickle: Int, sources: Int, state: Attack) {
        let start = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8)
        let drip = Array("X-Slow: 1\r\n".utf8)
        var sockets: [(fd: Int32, opened: Date, sent: Int)] = (0..<count).compactMap { index in
            guard let fd = try? LoopbackSocket.connect(port: port, source: "127.0.0.\(1 + index % sources)") else {
                return nil
            }
            _ = start.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            return (fd, Date(), 0)
        }
        while !state.stop.load(ordering: .relaxed) {
            let round = Date()
            for index in sockets.indices {
                var byte = drip[sockets[index].sent % drip.count]
                var probe: UInt8 = 0
                let closed = recv(sockets[index].fd, &probe, 1, Int32(MSG_DONTWAIT)) == 0
                if closed || send(sockets[index].fd, &byte, 1, Int32(MSG_NOSIGNAL)) != 1 {
                    state.lifetimes.withLock { $0.append(Date().timeIntervalSince(sockets[index].opened)) }
                    close(sockets[index].fd)
                    guard let fd = try? LoopbackSocket.connect(port: port, source: "127.0.0.\(1 + index % sources)")
                    else { continue }
                    _ = start.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    sockets[index] = (fd, Date(), 0)
                } else {
                    sockets[index].sent += 1
                }
            }
            let left = Double(trickle) / 1000 - Date().timeIntervalSince(round)
            if left > 0 { Thread.sleep(forTimeInterval: left) }
        }
        for socket in sockets { close(socket.fd) }
    }
}
