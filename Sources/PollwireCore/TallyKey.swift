/// One counter of a poll's tally: a question and a key within it.
///
/// Keys by question kind: an option id (single, multiple); the value as decimal text (rating,
/// NPS); the ordering joined by `>` (ranking). Key `#` counts the ballots that answered the
/// question; question `""` with key `#` counts the poll's ballots.
public struct TallyKey: Hashable, Sendable, Comparable {
    public var question: String
    public var key: String

    public init(question: String, key: String) {
        self.question = question
        self.key = key
    }

    /// The counter of all ballots of a poll.
    public static let ballots = TallyKey(question: "", key: "#")

    /// The counter of ballots that answered `question`.
    public static func responses(_ question: String) -> TallyKey { TallyKey(question: question, key: "#") }

    public static func < (lhs: TallyKey, rhs: TallyKey) -> Bool {
        (lhs.question, lhs.key) < (rhs.question, rhs.key)
    }
}

/// A change to one counter.
public struct TallyDelta: Sendable, Equatable {
    public var key: TallyKey
    public var amount: Int64

    public init(key: TallyKey, amount: Int64) {
        self.key = key
        self.amount = amount
    }
}
