import Foundation

/// What /proc says about a process: resident memory and CPU time consumed.
struct ProcessStats {
    /// Resident set size, bytes.
    var residentBytes: Int
    /// User plus system CPU time, seconds.
    var cpuSeconds: Double

    init?(pid: Int32) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        else { return nil }
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?
            .split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        // Fields after the command name (which may hold spaces) start after the last ')'.
        guard let rss, let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        self.residentBytes = rss * 1024
        self.cpuSeconds = (user + system) / ticks
    }
}
