/// A poll's results at one version: what `GET /results` and every live update carry.
public struct Results: Encodable, Sendable, Equatable {
    public var poll: String
    public var version: Int64
    public var total: Int64
    /// True when the viewer may see only the number of ballots (see `PollSettings.Visibility`).
    public var hidden: Bool
    /// Present (true) only while the server may be behind the store: a cluster node cut off
    /// from PostgreSQL serves what it last knew.
    public var stale: Bool?
    /// The head of the poll's ballot chain at this version (64 hex digits): what a voter's
    /// proof of inclusion ends at.
    public var chain: String? = nil
    public var questions: [QuestionResults]?

    /// Results of one question; which fields are present depends on its kind.
    public struct QuestionResults: Encodable, Sendable, Equatable {
        public var id: String
        public var kind: Question.Kind
        /// Ballots that answered this question.
        public var total: Int64
        /// single, multiple: count per option. ranking: Borda points and first choices per option.
        public var options: [OptionResults]?
        /// rating, nps: count per value, every value of the scale listed.
        public var distribution: [ValueCount]?
        /// rating, nps: the mean answer (nil before the first answer).
        public var mean: Double?
        /// nps: percentage of promoters (9-10) minus percentage of detractors (0-6), -100...100.
        public var nps: Double?
        public var promoters: Int64?
        public var passives: Int64?
        public var detractors: Int64?
        /// ranking: the instant-runoff winner and its rounds.
        public var winner: String?
        public var rounds: [InstantRunoff.Round]?
        /// text: the latest answers, newest first.
        public var latest: [String]?
    }

    public struct OptionResults: Encodable, Sendable, Equatable {
        public var id: String
        public var count: Int64?
        public var points: Int64?
        public var firstChoices: Int64?
    }

    public struct ValueCount: Encodable, Sendable, Equatable {
        public var value: Int
        public var count: Int64
    }
}

extension Results {
    /// Only the number of ballots: what a viewer sees while the results are hidden.
    public static func hidden(poll: String, version: Int64, total: Int64) -> Results {
        Results(poll: poll, version: version, total: total, hidden: true, stale: nil, questions: nil)
    }

    /// Full results of `poll` from its tally.
    ///
    /// - Parameter latestText: latest text answers by question id, newest first.
    public init(poll: Poll, version: Int64, tally: Tally, latestText: [String: [String]]) {
        self.poll = poll.id
        self.version = version
        self.total = tally.ballots
        self.hidden = false
        self.questions = poll.questions.map { question in
            QuestionResults(question: question, tally: tally, latest: latestText[question.id] ?? [])
        }
    }
}

extension Results.QuestionResults {
    init(question: Question, tally: Tally, latest: [String]) {
        self.id = question.id
        self.kind = question.kind
        self.total = tally[.responses(question.id)]
        let counts = tally.counts(of: question.id)
        switch question.kind {
        case .single, .multiple:
            self.options = question.options.map { Results.OptionResults(id: $0.id, count: counts[$0.id] ?? 0) }
        case .rating, .nps:
            let scale = question.effectiveScale
            let distribution = (scale.min...scale.max).map {
                Results.ValueCount(value: $0, count: counts[String($0)] ?? 0)
            }
            self.distribution = distribution
            let sum = distribution.reduce(Int64(0)) { $0 + Int64($1.value) * $1.count }
            let answered = distribution.reduce(Int64(0)) { $0 + $1.count }
            self.mean = answered > 0 ? Double(sum) / Double(answered) : nil
            if question.kind == .nps {
                let promoters = distribution.filter { $0.value >= 9 }.reduce(Int64(0)) { $0 + $1.count }
                let detractors = distribution.filter { $0.value <= 6 }.reduce(Int64(0)) { $0 + $1.count }
                self.promoters = promoters
                self.detractors = detractors
                self.passives = answered - promoters - detractors
                self.nps = answered > 0 ? (Double(promoters - detractors) * 100 / Double(answered)) : nil
            }
        case .ranking:
            let optionIDs = question.options.map(\.id)
            let orderings = counts.map { (ranking: $0.key.split(separator: ">").map(String.init), count: $0.value) }
                .sorted { $0.ranking.lexicographicallyPrecedes($1.ranking) }
            var points: [String: Int64] = [:]
            var first: [String: Int64] = [:]
            let width = Int64(optionIDs.count)
            for (ranking, count) in orderings {
                for (position, option) in ranking.enumerated() {
                    points[option, default: 0] += (width - 1 - Int64(position)) * count
                }
                if let top = ranking.first { first[top, default: 0] += count }
            }
            self.options = optionIDs.map {
                Results.OptionResults(id: $0, points: points[$0] ?? 0, firstChoices: first[$0] ?? 0)
            }
            let outcome = InstantRunoff.count(orderings: orderings, candidates: optionIDs, borda: points)
            self.winner = outcome.winner
            self.rounds = outcome.rounds
        case .text:
            self.latest = latest
        }
    }
}
