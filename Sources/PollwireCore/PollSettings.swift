/// How a poll treats its voters and its results.
public struct PollSettings: Codable, Sendable, Equatable {
    /// Who may see the results, and when.
    public enum Visibility: String, Codable, Sendable, CaseIterable {
        /// Anyone, at any time.
        case `public`
        /// Those who voted (they present the receipt their vote returned).
        case afterVote = "after_vote"
        /// Anyone, once the poll is closed; before that only the number of ballots.
        case afterClose = "after_close"
        /// Only the number of ballots until the poll is revealed.
        case hiddenUntilReveal = "hidden_until_reveal"
    }

    /// What makes two ballots "the same voter".
    public enum Dedupe: String, Codable, Sendable, CaseIterable {
        /// An external voter id given by the embedding site (as pol.is `xid`).
        case voter
        /// A device token issued and signed by this server.
        case device
        /// No dedupe: every ballot counts (an `Idempotency-Key` still makes retries safe).
        case none
    }

    public var visibility: Visibility
    public var dedupe: Dedupe
    /// Whether a voter may replace their ballot; the tallies move, never double count.
    public var allowChange: Bool
    /// Origins allowed to call the voter endpoints from a browser; empty means any.
    public var allowedOrigins: [String]

    public init(
        visibility: Visibility = .public,
        dedupe: Dedupe = .voter,
        allowChange: Bool = false,
        allowedOrigins: [String] = []
    ) {
        self.visibility = visibility
        self.dedupe = dedupe
        self.allowChange = allowChange
        self.allowedOrigins = allowedOrigins
    }

    enum CodingKeys: String, CodingKey {
        case visibility, dedupe, allowChange, allowedOrigins
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.visibility = try container.decodeIfPresent(Visibility.self, forKey: .visibility) ?? .public
        self.dedupe = try container.decodeIfPresent(Dedupe.self, forKey: .dedupe) ?? .voter
        self.allowChange = try container.decodeIfPresent(Bool.self, forKey: .allowChange) ?? false
        self.allowedOrigins = try container.decodeIfPresent([String].self, forKey: .allowedOrigins) ?? []
    }
}
