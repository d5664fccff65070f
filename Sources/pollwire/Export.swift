import ArgumentParser
import Foundation
import PollwireCore
import PollwireEngine

/// `pollwire export POLL`: a poll's ballots as NDJSON on standard output, page by page.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a poll's ballots as NDJSON.")

    @Argument(help: "The poll id.")
    var poll: String

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let reader = try await makeConfigReader(self.options)
        let store = try StoreSettings(reader: reader)
        let poll = self.poll
        try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
            try await Self.print(poll: poll, from: stores.pollStore)
        }
    }

    static func print(poll: String, from pollStore: any PollStore) async throws {
        var after: Int64 = 0
        while true {
            let page = try await pollStore.ballots(pollID: poll, after: after, limit: 1000)
            for ballot in page {
                var voter = "null"
                if let id = ballot.voter {
                    voter = ""
                    JSONText.appendQuoted(id, to: &voter)
                }
                Swift.print(
                    "{\"sequence\":\(ballot.sequence),\"voter\":\(voter),\"revision\":\(ballot.revision),"
                        + "\"version\":\(ballot.version),\"answers\":\(ballot.answers)}")
            }
            guard let last = page.last, page.count == 1000 else { break }
            after = last.sequence
        }
    }
}
