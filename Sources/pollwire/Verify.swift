import ArgumentParser
import Foundation
import PollwireEngine
import PollwireHTTP

/// `pollwire verify`: recomputes every ballot chain and recounts every poll's counters.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recompute every poll's ballot chain and recount its counters from its ballots.",
        discussion: """
            Exits 0 when everything fits, printing each poll's ballot count and chain head (what its
            results publish). Exits 1 at the first ballot that does not fit (edited, deleted, inserted or
            moved), naming its poll and store sequence, or at counters a recount does not give.
            """)

    @Option(help: "Only this poll.")
    var poll: String?

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let reader = try await makeConfigReader(self.options)
        let store = try StoreSettings(reader: reader)
        let poll = self.poll
        let lateness = Int64(PollwireSettings(reader: reader).allowedLatenessSeconds)
        do {
            let verified = try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await ChainVerifier.verify(stores.pollStore, pollID: poll, latenessSeconds: lateness)
            }
            for result in verified { print("ok \(result.poll) \(result.ballots) ballots, head \(result.head)") }
            print("verified \(verified.count) poll(s)")
        } catch let problem as ChainProblem {
            FileHandle.standardError.write(Data("pollwire verify: \(problem)\n".utf8))
            throw ExitCode(1)
        }
    }
}
