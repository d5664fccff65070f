import Foundation
import PollwireCore

// The request and response bodies of the API, where they differ from the domain types.

/// `POST /v1/polls`.
struct CreatePollRequest: Decodable {
    var title: String
    var questions: [Question]
    var settings: PollSettings?
    /// `draft` or `open` (default `open`).
    var status: Poll.Status?
    var opensAt: Date?
    var closesAt: Date?
}

/// A field of a PATCH body: absent (keep), null (clear) or a value (set).
enum Patch<Value: Decodable>: Decodable {
    case keep
    case clear
    case set(Value)

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self = container.decodeNil() ? .clear : .set(try container.decode(Value.self))
    }

    func applied(to value: Value?) -> Value? {
        switch self {
        case .keep: value
        case .clear: nil
        case .set(let new): new
        }
    }
}

/// `PATCH /v1/polls/{id}`: every field optional; `questions` only while the poll has no ballots.
struct UpdatePollRequest: Decodable {
    var title: String?
    var questions: [Question]?
    var settings: PollSettings?
    var opensAt: Patch<Date> = .keep
    var closesAt: Patch<Date> = .keep

    enum CodingKeys: String, CodingKey { case title, questions, settings, opensAt, closesAt }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.title = try container.decodeIfPresent(String.self, forKey: .title)
        self.questions = try container.decodeIfPresent([Question].self, forKey: .questions)
        self.settings = try container.decodeIfPresent(PollSettings.self, forKey: .settings)
        if container.contains(.opensAt) { self.opensAt = try container.decode(Patch<Date>.self, forKey: .opensAt) }
        if container.contains(.closesAt) { self.closesAt = try container.decode(Patch<Date>.self, forKey: .closesAt) }
    }
}

/// A poll as the API shows it: the definition plus where it stands.
struct PollView: Encodable {
    var id: String
    var title: String
    var questions: [Question]
    var settings: PollSettings
    var status: Poll.Status
    /// The status seen through opensAt and closesAt: draft, scheduled, open or closed.
    var phase: String
    var opensAt: Date?
    var closesAt: Date?
    var revealed: Bool
    var version: Int64
    var total: Int64
    var createdAt: Date
    var updatedAt: Date

    init(_ poll: Poll, version: Int64, total: Int64, now: Date) {
        self.id = poll.id
        self.title = poll.title
        self.questions = poll.questions
        self.settings = poll.settings
        self.status = poll.status
        self.phase = poll.phase(at: now).rawValue
        self.opensAt = poll.opensAt
        self.closesAt = poll.closesAt
        self.revealed = poll.revealed
        self.version = version
        self.total = total
        self.createdAt = poll.createdAt
        self.updatedAt = poll.updatedAt
    }
}

struct PollList: Encodable {
    var polls: [PollView]
}
