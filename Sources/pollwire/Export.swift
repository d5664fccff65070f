import ArgumentParser
import Foundation
import PollwireCore
import PollwireEngine
import PollwireSQLite

/// `pollwire export POLL`: a poll's ballots as NDJSON on standard output, page by page.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a poll's ballots as NDJSON.")

    @Argument(help: "The poll id.")
    var poll: String

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let store = try StoreSettings(reader: try await makeConfigReader(self.options))
        let pollStore = SQLitePollStore(database: try store.open())
        var after: Int64 = 0
        while true {
            let page = try await pollStore.ballots(pollID: self.poll, after: after, limit: 1000)
            for ballot in page {
                var voter = "null"
                if let id = ballot.voter {
                    voter = ""
                    JSONText.appendQuoted(id, to: &voter)
                }
                print(
                    "{\"sequence\":\(ballot.sequence),\"voter\":\(voter),\"revision\":\(ballot.revision),"
                        + "\"version\":\(ballot.version),\"answers\":\(ballot.answers)}")
            }
            guard let last = page.last, page.count == 1000 else { break }
            after = last.sequence
        }
    }
}
