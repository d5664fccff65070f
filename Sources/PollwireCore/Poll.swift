public import Foundation

/// A poll or survey: one or more questions, settings, and a lifecycle.
public struct Poll: Codable, Sendable, Equatable {
    /// Where a poll is in its life, as set by its owner.
    public enum Status: String, Codable, Sendable, CaseIterable {
        case draft
        case open
        case closed
    }

    /// Where a poll is at a given moment: its status seen through `opensAt` and `closesAt`.
    public enum Phase: String, Sendable {
        case draft
        /// Open, but `opensAt` is still to come.
        case scheduled
        case open
        case closed
    }

    public var id: String
    /// The owner (workspace) whose key created the poll: only its keys see and manage it.
    public var owner: String
    public var title: String
    public var questions: [Question]
    public var settings: PollSettings
    public var status: Status
    public var opensAt: Date?
    public var closesAt: Date?
    /// Set by `reveal`; results of a `hidden_until_reveal` poll show from then on.
    public var revealed: Bool
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String,
        owner: String = Poll.defaultOwner,
        title: String,
        questions: [Question],
        settings: PollSettings = PollSettings(),
        status: Status = .open,
        opensAt: Date? = nil,
        closesAt: Date? = nil,
        revealed: Bool = false,
        createdAt: Date,
        updatedAt: Date
    ) {
        self.id = id
        self.owner = owner
        self.title = title
        self.questions = questions
        self.settings = settings
        self.status = status
        self.opensAt = opensAt
        self.closesAt = closesAt
        self.revealed = revealed
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// The owner of everything made before owners existed, and of keys made without one.
    public static let defaultOwner = "default"

    /// The poll's phase at `now`.
    public func phase(at now: Date) -> Phase {
        switch self.status {
        case .draft: return .draft
        case .closed: return .closed
        case .open:
            if let closesAt, now >= closesAt { return .closed }
            if let opensAt, now < opensAt { return .scheduled }
            return .open
        }
    }

    /// Whether full results may be shown to a viewer at `now`.
    ///
    /// - Parameter hasVoted: whether the viewer proved that they voted (see ``PollSettings/Visibility/afterVote``).
    public func showsResults(at now: Date, hasVoted: Bool) -> Bool {
        switch self.settings.visibility {
        case .public: true
        case .afterVote: hasVoted || self.phase(at: now) == .closed
        case .afterClose: self.phase(at: now) == .closed
        case .hiddenUntilReveal: self.revealed
        }
    }

    /// The question with `id`, if any.
    public func question(_ id: String) -> Question? {
        self.questions.first { $0.id == id }
    }
}

extension Poll {
    private enum CodingKeys: String, CodingKey {
        case id, owner, title, questions, settings, status, opensAt, closesAt, revealed, createdAt, updatedAt
    }

    /// Definitions stored before owners existed have no `owner`: they belong to the default owner.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.owner = try container.decodeIfPresent(String.self, forKey: .owner) ?? Poll.defaultOwner
        self.title = try container.decode(String.self, forKey: .title)
        self.questions = try container.decode([Question].self, forKey: .questions)
        self.settings = try container.decode(PollSettings.self, forKey: .settings)
        self.status = try container.decode(Status.self, forKey: .status)
        self.opensAt = try container.decodeIfPresent(Date.self, forKey: .opensAt)
        self.closesAt = try container.decodeIfPresent(Date.self, forKey: .closesAt)
        self.revealed = try container.decode(Bool.self, forKey: .revealed)
        self.createdAt = try container.decode(Date.self, forKey: .createdAt)
        self.updatedAt = try container.decode(Date.self, forKey: .updatedAt)
    }
}
