public import Foundation
public import PollwireCore

/// A poll as the store holds it: definition, version, counters and latest text answers.
public struct StoredPoll: Sendable {
    public var poll: Poll
    /// Every shard's commit count for the poll (see `PollChange`); the embedded store has shard 0 only.
    public var shards: [Int32: Int64]
    public var tally: Tally
    /// Latest text answers by question id, newest first.
    public var latestText: [String: [String]]
    /// Every shard's ballot chain (`BallotChain`).
    public var chains: [Int32: ChainLink] = [:]

    public init(poll: Poll, shards: [Int32: Int64], tally: Tally, latestText: [String: [String]]) {
        self.poll = poll
        self.shards = shards.filter { $0.value > 0 }
        self.tally = tally
        self.latestText = latestText
    }

    /// A poll of one shard (the embedded store) at `version`.
    public init(poll: Poll, version: Int64, tally: Tally, latestText: [String: [String]]) {
        self.init(poll: poll, shards: [0: version], tally: tally, latestText: latestText)
    }

    /// The poll's version: the sum of its shards' commit counts.
    public var version: Int64 { self.shards.values.reduce(0, +) }
}

/// The latest text answers per text question, newest first, gathered from stored ballots read
/// newest first: what both stores load for results.
public struct LatestTextCollector {
    private let textQuestions: Set<String>
    private let limit: Int
    private let decoder = PollwireJSON.decoder()
    public private(set) var latest: [String: [String]] = [:]

    public init(poll: Poll, limit: Int) {
        self.textQuestions = Set(poll.questions.filter { $0.kind == .text }.map(\.id))
        self.limit = limit
    }

    /// Adds one ballot's canonical answers JSON (the next older ballot).
    public mutating func add(answers: String) throws {
        let decoded = try self.decoder.decode([String: Answer].self, from: Data(answers.utf8))
        for (question, answer) in decoded where self.textQuestions.contains(question) {
            if case .text(let text) = answer, self.latest[question, default: []].count < self.limit {
                self.latest[question, default: []].append(text)
            }
        }
    }
}

/// One stored ballot, as exported.
public struct StoredBallot: Sendable, Equatable {
    /// Position in the store's append-only order.
    public var sequence: Int64
    public var voter: String?
    /// 0 for a voter's first ballot, 1 for their first change, and so on.
    public var revision: Int
    /// Canonical JSON of the answers.
    public var answers: String
    /// The poll version that first included this ballot.
    public var version: Int64
    public var createdAt: Date
    /// The event time it was sent with, if any (`VoteCommand.CastAt`).
    public var castAt: VoteCommand.CastAt?

    public init(
        sequence: Int64, voter: String?, revision: Int, answers: String, version: Int64, createdAt: Date,
        castAt: VoteCommand.CastAt? = nil
    ) {
        self.sequence = sequence
        self.voter = voter
        self.revision = revision
        self.answers = answers
        self.version = version
        self.createdAt = createdAt
        self.castAt = castAt
    }
}

/// Durable storage of poll definitions, owners, API keys, the audit log and server secrets.
///
/// A change that carries an `AuditEntry` appends it in the same transaction as the change.
public protocol PollStore: Sendable {
    /// Every poll with its version and counters: what the TallyBook starts from.
    func loadPolls(latestTextLimit: Int) async throws -> [StoredPoll]
    /// Stores a new poll.
    func insert(_ poll: Poll, audit: AuditEntry?) async throws
    /// Replaces a poll's definition. Returns false when the poll does not exist.
    func update(_ poll: Poll, audit: AuditEntry?) async throws -> Bool
    /// Deletes a poll with its ballots and tallies. Returns false when it did not exist.
    func delete(pollID: String, audit: AuditEntry?) async throws -> Bool
    /// How many ballots a poll has stored.
    func ballotCount(pollID: String) async throws -> Int64
    /// Up to `limit` ballots of a poll with sequence above `after`, in order: a page of an export.
    func ballots(pollID: String, after: Int64, limit: Int) async throws -> [StoredBallot]

    /// Up to `limit` ballots of a poll with sequence above `after`, in store order, as the chain
    /// and a recount read them (`pollwire verify`, proofs).
    func chainedBallots(pollID: String, after: Int64, limit: Int) async throws -> [ChainedBallot]
    /// The poll's ballots cast per second (`WindowCount`, summed over shards) from `from` up to
    /// `to` (seconds since 1970, `to` excluded), in order.
    func windowCounts(pollID: String, from: Int64, to: Int64) async throws -> [WindowCount]

    /// Stores a new owner. Returns false when one with its id exists.
    func insertOwner(_ owner: OwnerRecord, audit: AuditEntry?) async throws -> Bool
    /// Every owner, oldest first.
    func owners() async throws -> [OwnerRecord]
    /// Stores a new API key under the SHA-256 `hash` of its secret. Throws `AccessError.unknownOwner`
    /// when its owner does not exist.
    func insertAPIKey(_ key: APIKeyRecord, hash: String, audit: AuditEntry?) async throws
    /// The key whose secret hashes to `hash`, revoked and expired ones included.
    func apiKey(hash: String) async throws -> APIKeyRecord?
    /// The keys of `owner` (every key when nil), oldest first.
    func apiKeys(owner: String?) async throws -> [APIKeyRecord]
    /// Revokes the key `id` of `owner` (of any owner when nil). Returns false when there is no
    /// such key; a key revoked before stays as it was (and nothing is appended).
    func revokeAPIKey(id: String, owner: String?, at: Date, audit: AuditEntry?) async throws -> Bool
    /// Records that the key `id` was used at `at`.
    func touchAPIKey(id: String, at: Date) async throws
    /// How many API keys exist.
    func apiKeyCount() async throws -> Int

    /// Stores a voter-token key. Throws `AccessError.unknownOwner` when its owner does not exist.
    func insertVoterKey(_ key: VoterKeyRecord, audit: AuditEntry?) async throws
    /// The voter-token keys of `owner`, oldest first.
    func voterKeys(owner: String) async throws -> [VoterKeyRecord]
    /// Deletes the voter-token key `id` of `owner`. Returns false when there is none.
    func deleteVoterKey(id: String, owner: String, audit: AuditEntry?) async throws -> Bool

    /// Appends an entry that goes with no stored change (an export).
    func appendAudit(_ entry: AuditEntry) async throws
    /// Up to `limit` entries that `query` selects, in order.
    func audit(_ query: AuditQuery, limit: Int) async throws -> [AuditEntry]

    /// The secret stored under `name`; when there is none, stores and returns `make()`.
    func secret(named name: String, orMake make: @Sendable () -> [UInt8]) async throws -> [UInt8]
}

extension PollStore {
    /// Stores a new poll without an audit entry (tests, the demo).
    public func insert(_ poll: Poll) async throws { try await self.insert(poll, audit: nil) }
    public func update(_ poll: Poll) async throws -> Bool { try await self.update(poll, audit: nil) }
    public func delete(pollID: String) async throws -> Bool { try await self.delete(pollID: pollID, audit: nil) }
}

/// What the access parts of a store refuse.
public enum AccessError: Error, Equatable, CustomStringConvertible {
    case unknownOwner(String)

    public var description: String {
        switch self {
        case .unknownOwner(let owner): "there is no owner \"\(owner)\""
        }
    }
}
