import ArgumentParser
import Foundation
import PollwireCore
import PollwireEngine
import PollwireHTTP
import ServiceLifecycle

/// `pollwire demo`: the server with a demo poll and simulated voters, so results move live.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server with a demo poll and simulated voters (data in a temporary directory).")

    @Option(help: "Simulated votes per second.")
    var rate: Double = 20

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        var options = self.options
        if !options.settings.contains("--data-dir") && ProcessInfo.processInfo.environment["POLLWIRE_DATA_DIR"] == nil {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-demo-\(getpid())")
            options.settings += ["--data-dir", directory.path]
        }
        let rate = max(0.1, self.rate)
        try await runServer(reader: try await makeConfigReader(options)) { parts, store, port in
            [DemoVoters(book: parts.book, ingestor: parts.ingestor, store: store, rate: rate, port: port)]
        }
    }
}

/// Creates the demo poll once the tallies are loaded, prints where to watch it, then votes at
/// `rate` per second through the ingestor (the same path as HTTP votes) until shutdown.
struct DemoVoters: Service {
    let book: TallyBook
    let ingestor: VoteIngestor
    let store: any PollStore
    let rate: Double
    let port: BoundPort

    static let poll = Poll(
        id: "demo",
        title: "What should we build next?",
        questions: [
            Question(
                id: "feature", kind: .single, prompt: "Pick one",
                options: [
                    .init(id: "widget", label: "Embeddable widget"), .init(id: "cluster", label: "Cluster mode"),
                    .init(id: "export", label: "Better exports"), .init(id: "themes", label: "Themes"),
                ]),
            Question(id: "nps", kind: .nps, prompt: "How likely are you to recommend Pollwire?"),
        ],
        settings: PollSettings(dedupe: .none), createdAt: Date(), updatedAt: Date())

    func run() async throws {
        while !self.book.isLoaded {
            try await Task.sleep(for: .milliseconds(20))
        }
        if self.book.poll(Self.poll.id) == nil {
            try await self.store.insert(Self.poll)
            self.book.put(Self.poll)
        }
        let port = try await self.port.wait()
        say(
            """
            Demo poll ready, \(self.rate) simulated votes/s. Watch it move:
              curl -N http://127.0.0.1:\(port)/v1/polls/demo/live
              curl http://127.0.0.1:\(port)/v1/polls/demo/results
            """)
        let interval = Duration.nanoseconds(Int64(1e9 / self.rate))
        var generator = SystemRandomNumberGenerator()
        let weights = [("widget", 45), ("cluster", 30), ("export", 15), ("themes", 10)]
        while !Task.isShuttingDownGracefully {
            var pick = Int.random(in: 0..<100, using: &generator)
            let option =
                weights.first {
                    pick -= $0.1; return pick < 0
                }?.0 ?? "widget"
            let score = min(10, max(0, Int((Double.random(in: 0...1, using: &generator) * 6).rounded()) + 5))
            let ballot = try Self.poll.ballot(answers: ["feature": .options([option]), "nps": .number(score)])
            _ = try? await self.ingestor.submit([
                VoteCommand(pollID: Self.poll.id, voter: nil, idempotencyKey: nil, ballot: ballot, allowChange: false)
            ])
            try? await Task.sleep(for: interval)
        }
    }
}
