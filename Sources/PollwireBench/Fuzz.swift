import ArgumentParser
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `pollwire-bench fuzz`: raw bytes at the HTTP front of a running server, one connection per
/// input, from a seed (`HTTPFuzzInputs`). Each input is written, the connection half-closed,
/// and the server must answer or close within `--answer-within` seconds. Fails (exit 1) on a
/// crash (the server process gone), a hang (neither answer nor close in time), a 5xx, or
/// descriptors the server still holds afterwards. Loopback only.
struct Fuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Feed seeded raw HTTP inputs to a server: no crash, no hang, no 5xx, no descriptor left open.")

    @Option(help: "Server port (127.0.0.1).") var port: Int
    @Option(help: "Server process id: its descriptors are counted before and after.") var serverPid: Int32
    @Option(help: "Number of inputs.") var inputs = 100_000
    @Option(help: "The first input's index (to replay a finding: --first N --inputs 1).") var first = 0
    @Option(help: "Seed of the inputs.") var seed: UInt64 = 1
    @Option(help: "Concurrent connections.") var connections = 8
    @Option(help: "Seconds the server has to answer or close each input.") var answerWithin = 2.0
    @Option(help: "Loopback source addresses (127.0.0.1 ... 127.0.0.N), so 4-tuples do not run out.")
    var sources = 16
    @Flag(help: "Print each input (escaped) before sending it: for replaying a finding.") var show = false

    struct Tally {
        var answered = 0
        var closedSilently = 0
        var streaming = 0
        var hangs: [Int] = []
        var serverErrors: [Int] = []
        var statuses: [Int: Int] = [:]
        var connectFailures = 0
        var finished = 0
    }

    func run() throws {
        let generator = HTTPFuzzInputs(seed: self.seed)
        if self.show {
            for index in self.first..<(self.first + self.inputs) {
                let text = generator.input(index).map { byte -> String in
                    (32..<127).contains(byte) ? String(UnicodeScalar(byte)) : String(format: "\\x%02x", byte)
                }.joined()
                print("input \(index): \(text.prefix(2000))")
            }
        }
        let before = try Self.descriptors(of: self.serverPid)
        let started = ContinuousClock.now
        let tally = Mutex(Tally())
        let workers = max(1, self.connections)
        let (port, first, count, within, sources) = (
            self.port, self.first, self.inputs, self.answerWithin, max(1, min(self.sources, 250))
        )
        // One thread per connection (not concurrentPerform: pinned to one core by taskset it
        // runs its iterations one after another).
        let threads = (0..<workers).map { worker in
            Thread {
                var local = Tally()
                var index = first + worker
                while index < first + count {
                    let outcome = Self.exchange(
                        generator.input(index), port: port, source: "127.0.0.\(1 + worker % sources)", within: within)
                    switch outcome {
                    case .answered(let status):
                        local.answered += 1
                        local.statuses[status, default: 0] += 1
                        if status >= 500 { local.serverErrors.append(index) }
                    case .streaming: local.streaming += 1
                    case .closed: local.closedSilently += 1
                    case .hung: local.hangs.append(index)
                    case .noConnection: local.connectFailures += 1
                    }
                    index += workers
                }
                tally.withLock { total in
                    total.answered += local.answered
                    total.closedSilently += local.closedSilently
                    total.streaming += local.streaming
                    total.hangs += local.hangs
                    total.serverErrors += local.serverErrors
                    total.connectFailures += local.connectFailures
                    total.statuses.merge(local.statuses, uniquingKeysWith: +)
                    total.finished += 1
                }
            }
        }
        for thread in threads { thread.start() }
        while tally.withLock({ $0.finished }) < workers { usleep(10_000) }
        let elapsed = ContinuousClock.now - started
        let alive = kill(self.serverPid, 0) == 0
        // The server closes its side as it answers; give its loops a moment to finish.
        var after = alive ? try Self.descriptors(of: self.serverPid) : 0
        for _ in 0..<50 where alive && after > before + 8 {
            usleep(100_000)
            after = try Self.descriptors(of: self.serverPid)
        }
        let result = tally.withLock { $0 }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(
            "fuzz: \(count) inputs (seed \(self.seed), from \(first)) in \(String(format: "%.1f", seconds)) s "
                + "(\(Int(Double(count) / max(seconds, 0.001))) inputs/s): answered \(result.answered), "
                + "closed without an answer \(result.closedSilently), streams \(result.streaming), "
                + "hangs \(result.hangs.count), 5xx \(result.serverErrors.count), "
                + "connect failures \(result.connectFailures); server alive: \(alive); "
                + "descriptors before \(before), after \(after)")
        print(
            "fuzz: statuses "
                + result.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        var failures: [String] = []
        if !alive { failures.append("the server died") }
        if !result.hangs.isEmpty { failures.append("hangs at inputs \(result.hangs.sorted().prefix(5))") }
        if !result.serverErrors.isEmpty { failures.append("5xx at inputs \(result.serverErrors.sorted().prefix(5))") }
        if alive, after > before + 8 { failures.append("the server holds \(after - before) more descriptors") }
        if result.connectFailures > count / 100 { failures.append("\(result.connectFailures) connections failed") }
        guard failures.isEmpty else {
            print("fuzz: FAILED: " + failures.joined(separator: "; "))
            throw ExitCode.failure
        }
        print("fuzz: passed")
    }

    enum Outcome {
        case answered(Int)
        /// A 101 or an event stream: the connection stays open by design.
        case streaming
        case closed
        case hung
        case noConnection
    }

    /// One input on its own connection: write, half-close, read until the server closes.
    static func exchange(_ bytes: [UInt8], port: Int, source: String, within: Double) -> Outcome {
        guard let fd = try? LoopbackSocket.connect(port: port, source: source) else { return .noConnection }
        defer { close(fd) }
        // RST on close: neither side keeps TIME_WAIT for a million short connections.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        var sent = 0
        while sent < bytes.count {
            let written = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            }
            if written <= 0 { break }  // the server closed early: what it said is read below
            sent += written
        }
        shutdown(fd, Int32(SHUT_WR))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let deadline = ContinuousClock.now + .milliseconds(Int(within * 1000))
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            guard poll(&poller, 1, max(1, milliseconds)) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 {
                // EOF or reset: the server ended the connection.
                return Self.status(received).map { .answered($0) } ?? .closed
            }
            received += buffer[..<count]
            if received.count > 1 << 20 { received.removeFirst(received.count - 1024) }
            if let status = Self.status(received), status == 101 || Self.isEventStream(received) { return .streaming }
        }
        return received.isEmpty ? .hung : (Self.status(received).map { _ in .hung } ?? .hung)
    }

    /// The status of the first response, once its status line has arrived.
    static func status(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 12, bytes.starts(with: Array("HTTP/1.1 ".utf8)) else { return nil }
        return Int(String(decoding: bytes[9..<12], as: UTF8.self))
    }

    static func isEventStream(_ bytes: [UInt8]) -> Bool {
        String(decoding: bytes.prefix(2048), as: UTF8.self).lowercased().contains("content-type: text/event-stream")
    }

    static func descriptors(of pid: Int32) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }
}
