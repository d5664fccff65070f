import Benchmark
import Foundation
import Hummingbird
import NIOCore
import PollwireCore
import PollwireEngine
import PollwireHTTP
import PollwireSQLite

// Whole HTTP/1.1 requests against a real server in this process (SQLite file, loopback socket,
// the default pipeline), as SwiftNIO's `test_1000_reqs_1_conn`: the allocations of 1,000 results
// reads and of 100 durable votes on one keep-alive connection, server and client together (the
// client is a blocking socket with fixed buffers: it allocates nothing per request). The counts
// carry checked-in thresholds (Thresholds/); they move a little from run to run with the
// server's timers and how reads and writes meet on the socket (2,119-2,301 for the reads in 20
// samples here), so 10% is allowed.

/// A server running in this process, and a poll on it.
final class Served: Sendable {
    let port: Int
    let poll: String

    init(port: Int, poll: String) {
        self.port = port
        self.poll = poll
    }

    static func start() async throws -> Served {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let database = try SQLiteDatabase(path: directory.appendingPathComponent("pollwire.sqlite").path)
        let pollStore = SQLitePollStore(database: database)
        let poll = Poll(
            id: "benchpoll", title: "Where?",
            questions: [
                Question(
                    id: "q1", kind: .single, prompt: "Lunch?",
                    options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
            ],
            settings: PollSettings(dedupe: .none), createdAt: Date(), updatedAt: Date())
        try await pollStore.insert(poll)
        var settings = PollwireSettings()
        settings.host = "127.0.0.1"
        settings.port = 0
        settings.rateLimits.allowList = ["127.0.0.1"]
        let (stream, port) = AsyncStream.makeStream(of: Int.self)
        let (app, parts) = try await PollwireApplication.make(
            settings: settings, pollStore: pollStore, voteStore: SQLiteVoteStore(database: database),
            onServerRunning: { channel in
                port.yield(channel.localAddress?.port ?? 0)
                port.finish()
            })
        Task { try await app.runService() }
        var bound = 0
        for await value in stream { bound = value }
        for _ in 0..<500 where !parts.book.isLoaded { try await Task.sleep(for: .milliseconds(10)) }
        return Served(port: bound, poll: poll.id)
    }
}

/// Hands a value that is used by one thread at a time to another thread.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// One keep-alive connection with fixed buffers: a request out, its whole response in.
final class Connection {
    let fd: Int32
    var buffer = [UInt8](repeating: 0, count: 65536)

    init(port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw CancellationError() }
    }

    deinit { close(self.fd) }

    /// `count` exchanges of `request` on a thread of their own: the blocking socket must not hold
    /// a thread of the concurrency pool, which the server's request tasks need (two on two cores).
    func run(_ count: Int, _ request: [UInt8], expecting status: Int) async -> Bool {
        await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            let connection = UncheckedBox(self)
            Thread {
                var answered = true
                for _ in 0..<count where connection.value.exchange(request) != status {
                    answered = false
                    break
                }
                done.resume(returning: answered)
            }.start()
        }
    }

    /// Sends `request` and reads one whole response (head and Content-Length body); its status.
    func exchange(_ request: [UInt8]) -> Int {
        _ = request.withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, 0) }
        var filled = 0
        var status = 0
        while true {
            let count = self.buffer.withUnsafeMutableBytes {
                recv(self.fd, $0.baseAddress! + filled, $0.count - filled, 0)
            }
            guard count > 0 else { return 0 }
            filled += count
            // The head's end, then the body's length from Content-Length.
            guard let end = Self.headEnd(self.buffer, filled) else { continue }
            status = (Int(self.buffer[9]) - 48) * 100 + (Int(self.buffer[10]) - 48) * 10 + Int(self.buffer[11]) - 48
            if filled >= end + Self.contentLength(self.buffer, end) { return status }
        }
    }

    static func headEnd(_ bytes: [UInt8], _ count: Int) -> Int? {
        guard count >= 4 else { return nil }
        for index in 3..<count
        where bytes[index] == 10 && bytes[index - 1] == 13 && bytes[index - 2] == 10 && bytes[index - 3] == 13 {
            return index + 1
        }
        return nil
    }

    /// `content-length: N` in the head (case-insensitive), 0 if absent.
    static func contentLength(_ bytes: [UInt8], _ end: Int) -> Int {
        let name = Array("\ncontent-length:".utf8)
        var index = 0
        while index + name.count < end {
            var matches = true
            for offset in 0..<name.count where bytes[index + offset] | 0x20 != name[offset] | 0x20 {
                matches = false
                break
            }
            if matches {
                var value = 0
                var at = index + name.count
                while at < end, bytes[at] == 32 { at += 1 }
                while at < end, bytes[at] >= 48, bytes[at] <= 57 {
                    value = value * 10 + Int(bytes[at]) - 48
                    at += 1
                }
                return value
            }
            index += 1
        }
        return 0
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        warmupIterations: 2,
        maxDuration: .seconds(5),
        maxIterations: 20,
        thresholds: [.mallocCountTotal: .init(relative: [.p90: 10.0])]
    )

    // 1,000 plain results reads on one connection (answered at the bytes, before the HTTP decoder).
    Benchmark("ResultsRead1000") { benchmark in
        let served = try await Served.shared()
        let connection = try Connection(port: served.port)
        let request = Array("GET /v1/polls/\(served.poll)/results HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        benchmark.startMeasurement()
        let answered = await connection.run(1000, request, expecting: 200)
        benchmark.stopMeasurement()
        guard answered else { throw CancellationError() }
    }

    // What the ballot chain costs the store: one group commit of 1,000 new voters' ballots to the
    // SQLite file, chained and not (`ingest.ballotChain`), CPU time of the commit alone (the fsync
    // waits are not CPU). Reported, not checked: compare the two lines of one run.
    for chaining in [true, false] {
        Benchmark(
            chaining ? "Commit1000Chained" : "Commit1000Unchained",
            configuration: .init(
                metrics: [.cpuTotal, .wallClock, .mallocCountTotal], warmupIterations: 3, maxDuration: .seconds(10),
                maxIterations: 200, thresholds: [:])
        ) { benchmark in
            let store = try await CommitFixture.shared(chaining: chaining)
            let votes = try store.nextVotes()
            benchmark.startMeasurement()
            blackHole(try await store.votes.commit(votes, at: Date()))
            benchmark.stopMeasurement()
        }
    }

    // 100 durable single votes on one connection, each answered after its commit.
    Benchmark("Vote100") { benchmark in
        let served = try await Served.shared()
        let connection = try Connection(port: served.port)
        let body = #"{"answers":{"q1":["a"]}}"#
        let request = Array(
            ("POST /v1/polls/\(served.poll)/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)").utf8)
        benchmark.startMeasurement()
        let answered = await connection.run(100, request, expecting: 201)
        benchmark.stopMeasurement()
        guard answered else { throw CancellationError() }
    }
}

extension Served {
    /// One server for every benchmark of this process.
    static func shared() async throws -> Served {
        try await Self.instance.value
    }

    static let instance = Task { try await Served.start() }
}

/// A SQLite file with one poll that dedupes by voter, and a store that chains or not.
final class CommitFixture: @unchecked Sendable {
    let votes: SQLiteVoteStore
    let poll: Poll
    private let lock = NSLock()
    private var next = 0

    private init(votes: SQLiteVoteStore, poll: Poll) {
        self.votes = votes
        self.poll = poll
    }

    static func make(chaining: Bool) async throws -> CommitFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-commit-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let database = try SQLiteDatabase(
            path: directory.appendingPathComponent("pollwire.sqlite").path, synchronous: .normal)
        let poll = Poll(
            id: "commitpoll", title: "Where?",
            questions: [
                Question(
                    id: "q1", kind: .single, prompt: "Lunch?",
                    options: [.init(id: "a", label: "A"), .init(id: "b", label: "B")])
            ],
            createdAt: Date(), updatedAt: Date())
        try await SQLitePollStore(database: database).insert(poll)
        return CommitFixture(votes: SQLiteVoteStore(database: database, chaining: chaining), poll: poll)
    }

    /// The next 1,000 ballots, each from a new voter.
    func nextVotes() throws -> [VoteCommand] {
        let first = self.lock.withLock {
            defer { self.next += 1000 }
            return self.next
        }
        return try (first..<first + 1000).map { index in
            VoteCommand(
                pollID: self.poll.id, voter: "v:\(index)", idempotencyKey: nil,
                ballot: try self.poll.ballot(answers: ["q1": .options([index % 2 == 0 ? "a" : "b"])]),
                allowChange: false)
        }
    }

    static let chained = Task { try await CommitFixture.make(chaining: true) }
    static let unchained = Task { try await CommitFixture.make(chaining: false) }

    static func shared(chaining: Bool) async throws -> CommitFixture {
        try await (chaining ? Self.chained : Self.unchained).value
    }
}
