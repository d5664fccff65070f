import Foundation

/// A child process started with `posix_spawn`, its output read by a plain thread: no Foundation
/// `Process`, `Pipe` or `readabilityHandler`, whose dispatch sources crashed a CI run inside
/// libdispatch (`_dispatch_event_loop_drain`) while the edge tests started and stopped
/// processes.
final class Child: @unchecked Sendable {
    /// Where the child's standard output (and error, with `errorsToo`) go.
    enum Output {
        /// Dropped (`/dev/null`).
        case discard
        /// Kept, for `readToEnd` and `text`.
        case collect
        /// Handed to the closure as it arrives, on the reader thread.
        case stream(@Sendable (Data) -> Void)
    }

    let pid: pid_t
    private static let spawning = NSLock()
    private let lock = NSLock()
    private var status: Int32?
    private var collected = Data()
    private var reading: Thread?
    private let readDone = NSCondition()
    private var readFinished = true

    private init(pid: pid_t) {
        self.pid = pid
    }

    /// Starts `path` with `arguments` (and `environment`, else this process's).
    static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, output: Output = .discard,
        errorsToo: Bool = false
    ) throws -> Child {
        // One spawn at a time: a pipe is made close-on-exec before another child can inherit it.
        Self.spawning.lock()
        defer { Self.spawning.unlock() }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var fds: [Int32] = [-1, -1]
        if case .discard = output {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        } else {
            guard pipe(&fds) == 0 else { throw ServerProcessError(message: "pipe failed: \(errno)") }
            // Not inherited by anything spawned later (the write end would keep the reader from EOF).
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        }
        if errorsToo, fds[1] >= 0 {
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in env { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, env)
        if fds[1] >= 0 { close(fds[1]) }
        guard spawned == 0 else {
            if fds[0] >= 0 { close(fds[0]) }
            throw ServerProcessError(message: "posix_spawn \(path) failed: \(spawned)")
        }
        let child = Child(pid: pid)
        if fds[0] >= 0 { child.startReading(fds[0], output) }
        return child
    }

    private func startReading(_ fd: Int32, _ output: Output) {
        self.readFinished = false
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                let chunk = Data(buffer[0..<count])
                switch output {
                case .stream(let handler): handler(chunk)
                default: self.lock.withLock { self.collected.append(chunk) }
                }
            }
            close(fd)
            self.readDone.withLock {
                self.readFinished = true
                self.readDone.broadcast()
            }
        }
        self.reading = thread
        thread.start()
    }

    /// The output collected so far.
    var text: String { self.lock.withLock { String(decoding: self.collected, as: UTF8.self) } }

    /// Waits until the child closed its output (at most `timeout`), then returns all of it.
    func readToEnd(timeout: TimeInterval = 60) -> Data {
        self.readDone.withLock {
            let deadline = Date().addingTimeInterval(timeout)
            while !self.readFinished, self.readDone.wait(until: deadline) {}
        }
        return self.lock.withLock { self.collected }
    }

    /// Reaps the child if it ended (without waiting); its exit status once it did.
    private func reap(blocking: Bool) -> Int32? {
        self.lock.withLock {
            if let status = self.status { return status }
            var raw: Int32 = 0
            let result = waitpid(self.pid, &raw, blocking ? 0 : WNOHANG)
            guard result == self.pid else { return nil }
            // As Foundation reports it: the exit code, or the signal that ended it.
            let signal = raw & 0x7F
            self.status = signal == 0 ? (raw >> 8) & 0xFF : signal
            return self.status
        }
    }

    var isRunning: Bool { self.reap(blocking: false) == nil }

    /// The exit status (or ending signal); waits for the child to end.
    @discardableResult
    func waitUntilExit() -> Int32 {
        while true {
            if let status = self.reap(blocking: false) { return status }
            usleep(2000)
        }
    }

    var terminationStatus: Int32 { self.waitUntilExit() }

    /// The exit status once the child ended, waiting at most `timeout`; nil if it still runs.
    func waitUntilExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = self.reap(blocking: false) { return status }
            usleep(2000)
        }
        return self.reap(blocking: false)
    }

    func signal(_ signal: Int32) {
        guard self.isRunning else { return }
        _ = Foundation.kill(self.pid, signal)
    }

    func terminate() { self.signal(SIGTERM) }
}
