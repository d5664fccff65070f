import Foundation
import HTTPTypes
import HummingbirdTesting
import Synchronization
import Testing

/// A throwaway PostgreSQL server: `initdb` into a temporary directory, on a free loopback
/// port, trust authentication, database `pollwire`. PostgreSQL refuses to run as root, so as
/// root its tools run as the `postgres` user (`runuser`).
final class ThrowawayPostgres: Sendable {
    let directory: URL
    let port: Int
    let bin: String

    var url: String { "postgres://postgres@127.0.0.1:\(self.port)/pollwire" }

    static func start() throws -> ThrowawayPostgres {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }).last
        else { throw ServerProcessError(message: "PostgreSQL is not installed (apt-get install postgresql)") }
        let directory = temporaryDirectory("pg")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let postgres = ThrowawayPostgres(
            directory: directory, port: try freePort(), bin: "/usr/lib/postgresql/\(version)/bin")
        if getuid() == 0 { _ = try run("/bin/chown", ["-R", "postgres", directory.path]) }
        let initdb = try postgres.asPostgres(
            "initdb", ["-D", postgres.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        guard initdb.status == 0 else { throw ServerProcessError(message: "initdb failed: \(initdb.output)") }
        let settings = """
            port = \(postgres.port)
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '\(postgres.data)'
            max_connections = 100
            fsync = on
            """
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: postgres.data + "/postgresql.conf"))
        handle.seekToEndOfFile()
        handle.write(Data(("\n" + settings + "\n").utf8))
        try handle.close()
        try postgres.startServer()
        let created = try postgres.asPostgres(
            "createdb", ["-h", "127.0.0.1", "-p", "\(postgres.port)", "-U", "postgres", "pollwire"])
        guard created.status == 0 else { throw ServerProcessError(message: "createdb failed: \(created.output)") }
        return postgres
    }

    private init(directory: URL, port: Int, bin: String) {
        self.directory = directory
        self.port = port
        self.bin = bin
    }

    private var data: String { self.directory.appendingPathComponent("data").path }

    private func asPostgres(_ tool: String, _ arguments: [String]) throws -> CommandResult {
        if getuid() == 0 {
            return try run("/sbin/runuser", ["-u", "postgres", "--", "\(self.bin)/\(tool)"] + arguments)
        }
        return try run("\(self.bin)/\(tool)", arguments)
    }

    func startServer() throws {
        let status = try spawnAndWait(
            getuid() == 0 ? "/sbin/runuser" : "\(self.bin)/pg_ctl",
            (getuid() == 0 ? ["-u", "postgres", "--", "\(self.bin)/pg_ctl"] : []) + [
                "-D", self.data, "-l", self.directory.appendingPathComponent("log").path, "-w", "-t", "20", "start",
            ])
        guard status == 0 else { throw ServerProcessError(message: "pg_ctl start exited \(status)") }
    }

    /// Stops the server at once (`-m fast`: open connections are cut).
    func stopServer() throws {
        let stopped = try self.asPostgres("pg_ctl", ["-D", self.data, "-m", "fast", "-w", "stop"])
        guard stopped.status == 0 else { throw ServerProcessError(message: "pg_ctl stop failed: \(stopped.output)") }
    }

    /// Rows of a query, tab-separated columns, through psql.
    func query(_ sql: String) throws -> [[String]] {
        let result = try run(
            "/usr/bin/psql",
            ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", "postgres", "-d", "pollwire", "-AtF", "\t", "-c", sql])
        guard result.status == 0 else { throw ServerProcessError(message: "psql failed: \(sql)") }
        return result.output.split(separator: "\n", omittingEmptySubsequences: true).map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
    }

    func destroy() {
        _ = try? self.stopServer()
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// HAProxy in the foreground with the repository's deploy/haproxy.cfg, its `server` lines
/// replaced by the given nodes and its port by a free one.
final class HAProxy: @unchecked Sendable {
    let process: Process
    let port: Int

    static var repositoryConfig: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/haproxy.cfg")
    }

    static func start(directory: URL, nodes: [Int]) async throws -> HAProxy {
        let port = try freePort()
        var lines: [String] = []
        for line in try String(contentsOf: Self.repositoryConfig, encoding: .utf8).components(separatedBy: "\n") {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("server node") { continue }
            // 127.0.0.1 skips the vote limit, as the nodes' allow list does (`ServerProcess`);
            // a test of the limit votes from another loopback address.
            lines.append(
                line.replacingOccurrences(of: "bind 127.0.0.1:8080", with: "bind 127.0.0.1:\(port)")
                    .replacingOccurrences(of: "acl exempt src 192.0.2.1", with: "acl exempt src 127.0.0.1"))
            if line.contains("default-server") {
                for (index, node) in nodes.enumerated() {
                    lines.append("    server node\(index + 1) 127.0.0.1:\(node) check")
                }
            }
        }
        let config = directory.appendingPathComponent("haproxy.cfg")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try lines.joined(separator: "\n").write(to: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/haproxy")
        process.arguments = ["-db", "-f", config.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let proxy = HAProxy(process: process, port: port)
        // Ready when it forwards /readyz to a node that answers.
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if (try? fetch(port, "/readyz"))?.headers.hasPrefix("HTTP/1.1 200") == true { return proxy }
            try await Task.sleep(for: .milliseconds(100))
        }
        process.terminate()
        throw ServerProcessError(message: "haproxy did not forward /readyz")
    }

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
    }

    func client() -> TestClient {
        let client = TestClient(host: "127.0.0.1", port: self.port, configuration: .init(timeout: .seconds(10)))
        client.connect()
        return client
    }

    func terminate() {
        self.process.terminate()
        self.process.waitUntilExit()
    }
}

/// A live viewer of one poll on one node: `curl -N` on its SSE stream, every event's version
/// and when it arrived.
final class SSEViewer: @unchecked Sendable {
    let process: Process
    private let state = Mutex<(buffer: String, versions: [Int64: ContinuousClock.Instant], last: String)>(("", [:], ""))

    init(port: Int, pollID: String, lastEventID: String? = nil) throws {
        self.process = Process()
        self.process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        self.process.arguments =
            ["-sN", "--max-time", "120", "http://127.0.0.1:\(port)/v1/polls/\(pollID)/live"]
            + (lastEventID.map { ["-H", "Last-Event-ID: \($0)"] } ?? [])
        let pipe = Pipe()
        self.process.standardOutput = pipe
        self.process.standardError = FileHandle.nullDevice
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = String(decoding: handle.availableData, as: UTF8.self)
            let now = ContinuousClock.now
            self?.state.withLock { state in
                state.buffer += chunk
                while let end = state.buffer.range(of: "\n\n") {
                    let event = state.buffer[..<end.lowerBound]
                    state.buffer.removeSubrange(..<end.upperBound)
                    var version: Int64?
                    for line in event.split(separator: "\n") {
                        if line.hasPrefix("id: ") { version = Int64(line.dropFirst(4)) }
                        if line.hasPrefix("data: ") { state.last = String(line.dropFirst(6)) }
                    }
                    if let version, state.versions[version] == nil { state.versions[version] = now }
                }
            }
        }
        try self.process.run()
    }

    /// The newest results this viewer got.
    var latest: [String: Any]? {
        let text = self.state.withLock { $0.last }
        return try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    /// Waits until the newest results this viewer got satisfy `condition` (at most `timeout`).
    func waitForLatest(timeout: Duration, _ condition: ([String: Any]) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let latest = self.latest, condition(latest) { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// When this viewer first saw a version at or above `version`.
    func firstSeen(atLeast version: Int64) -> ContinuousClock.Instant? {
        self.state.withLock { state in
            state.versions.filter { $0.key >= version }.map(\.value).min()
        }
    }

    /// Waits until the viewer saw `version` (at most `timeout`).
    func wait(for version: Int64, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.firstSeen(atLeast: version) != nil { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Ends curl with SIGKILL: it may have inherited an ignored SIGTERM from the test process
    /// (it then ran on until its --max-time, 120 s).
    func stop() {
        kill(self.process.processIdentifier, SIGKILL)
        self.process.waitUntilExit()
    }
}

/// PostgreSQL, three Pollwire nodes on it, HAProxy in front.
struct TestCluster {
    let postgres: ThrowawayPostgres
    var nodes: [ServerProcess]
    let proxy: HAProxy
    let directory: URL
    let key: String

    static func start(nodes count: Int = 3) async throws -> TestCluster {
        let postgres = try ThrowawayPostgres.start()
        let directory = temporaryDirectory("cluster")
        let key = try ServerProcess.runTool(["keys", "create", "--store", postgres.url])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var nodes: [ServerProcess] = []
        for index in 0..<count {
            nodes.append(try await Self.startNode(index, postgres: postgres, directory: directory))
        }
        let proxy = try await HAProxy.start(directory: directory, nodes: nodes.map(\.port))
        return TestCluster(postgres: postgres, nodes: nodes, proxy: proxy, directory: directory, key: key)
    }

    static func startNode(_ index: Int, postgres: ThrowawayPostgres, directory: URL) async throws -> ServerProcess {
        try await ServerProcess.start(
            dataDir: directory.appendingPathComponent("node\(index)"), arguments: ["--store", postgres.url])
    }

    /// Creates a poll through the load balancer and returns its id.
    func createPoll(_ definition: String) async throws -> String {
        let client = self.proxy.client()
        defer { Task { try? await client.shutdown() } }
        let created = try await client.json(
            .post, "/v1/polls", definition, headers: [.authorization: "Bearer \(self.key)"])
        #expect(created.status == .created, "\(created.text)")
        let id = try #require(try created.object()["id"] as? String)
        // Every node learns of a new poll from the change feed, or looks it up in PostgreSQL when
        // a request names it first. A live stream (on the event loop) is only served by a node
        // that knows the poll: make each one know it (at most 5 s).
        for node in self.nodes {
            let reader = node.client()
            defer { Task { try? await reader.shutdown() } }
            var known = false
            for _ in 0..<250 where !known {
                known = try await reader.json(.get, "/v1/polls/\(id)").status == .ok
                if !known { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(known, "node \(node.port) never learned of poll \(id)")
        }
        return id
    }

    /// What PostgreSQL holds for a poll: each voter's latest answers (by stored voter id: `v:`
    /// and the voter's own id), the tallies (summed over the nodes' shards), a recount of the
    /// tallies from the voters' latest ballots, the version (the sum of the shards' sequences)
    /// and the number of ballot rows.
    func stored(
        _ pollID: String
    ) throws -> (
        answers: [String: String], tallies: [String: Int64], recount: [String: Int64], version: Int64, ballots: Int
    ) {
        var answers: [String: String] = [:]
        var recount: [String: Int64] = [:]
        for row in try self.postgres.query(
            "SELECT voter, answers, replace(replace(keys, chr(9), '/'), chr(10), ' ') FROM voters WHERE poll_id = '\(pollID)'"
        ) {
            answers[row[0]] = row[1]
            for key in row[2].split(separator: " ") { recount[String(key), default: 0] += 1 }
        }
        var tallies: [String: Int64] = [:]
        for row in try self.postgres.query(
            """
            SELECT question || '/' || key, sum(count) FROM tally_shards WHERE poll_id = '\(pollID)'
            GROUP BY question, key HAVING sum(count) <> 0
            """)
        {
            tallies[row[0]] = Int64(row[1])
        }
        let version =
            Int64(
                try self.postgres.query(
                    "SELECT COALESCE(sum(sequence), 0) FROM poll_shards WHERE poll_id = '\(pollID)'")[0][0]) ?? -1
        let ballots =
            Int(try self.postgres.query("SELECT count(*) FROM ballots WHERE poll_id = '\(pollID)'")[0][0]) ?? -1
        return (answers, tallies, recount, version, ballots)
    }

    func stop() async {
        self.proxy.terminate()
        for node in self.nodes {
            node.terminate()
            _ = try? await node.waitForExit(timeout: .seconds(10))
        }
        self.postgres.destroy()
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// Runs a program and waits for it with posix_spawn and waitpid, output discarded. For
/// `pg_ctl start`: Foundation's Process would wait on the daemon it leaves behind, which
/// inherits the descriptor Process watches for the child's exit.
func spawnAndWait(_ path: String, _ arguments: [String]) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] {
        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
    }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard spawned == 0 else { throw ServerProcessError(message: "could not run \(path): \(spawned)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1, errno == EINTR {}
    return (status >> 8) & 0xff
}
