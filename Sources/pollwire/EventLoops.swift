import Foundation
import NIOCore

/// How many event loops the server runs: one per CPU it may run on.
///
/// NIO sizes its singleton group by `System.coreCount`, which honours cgroup quotas and cpusets but
/// not the process's affinity mask: under `taskset -c 0` on a two-core machine it ran two loops on
/// one core, and the kernel switched between them (`finish_task_switch` was 9-13% of the server's
/// profile). Called once, before anything uses NIO's singletons; `NIO_SINGLETON_GROUP_LOOP_COUNT`,
/// when set, wins.
enum EventLoops {
    static func sizeToAffinity() {
        guard ProcessInfo.processInfo.environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] == nil,
            let allowed = Self.allowedCPUs(), allowed < System.coreCount
        else { return }
        NIOSingletons.groupLoopCountSuggestion = allowed
    }

    /// The CPUs in this process's affinity mask (`Cpus_allowed_list` of /proc/self/status, e.g.
    /// `0-1,4`), nil where it cannot be read.
    static func allowedCPUs() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return nil }
        return Self.count(cpuList: line.dropFirst("Cpus_allowed_list:".count))
    }

    /// The CPUs a Linux CPU list names (`0-3,8,10-11`); nil for anything else.
    static func count(cpuList: Substring) -> Int? {
        var total = 0
        for item in cpuList.split(separator: ",") {
            let bounds = item.trimmingCharacters(in: .whitespaces).split(separator: "-").map { Int($0) }
            switch bounds.count {
            case 1:
                guard bounds[0] != nil else { return nil }
                total += 1
            case 2:
                guard let low = bounds[0], let high = bounds[1], high >= low else { return nil }
                total += high - low + 1
            default:
                return nil
            }
        }
        return total > 0 ? total : nil
    }
}
