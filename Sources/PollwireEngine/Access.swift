public import Foundation

/// What an API key may do. A key holds a set of scopes; each management route asks for one.
public enum KeyScope: String, CaseIterable, Sendable, Comparable {
    /// List polls, read drafts.
    case read
    /// Create, change, open, close, reveal and delete polls; submit ballot batches.
    case write
    /// Export ballots.
    case export
    /// Manage its owner's keys; read its owner's audit log.
    case admin
    /// Manage owners and every owner's keys; read the whole audit log.
    case `operator`

    /// What a key gets when nothing is asked for: everything an owner may do.
    public static let ownerDefault: Set<KeyScope> = [.read, .write, .export, .admin]

    /// Parses `read,write` (commas or spaces); nil names the first word that is no scope.
    public static func parse(_ text: String) -> Result<Set<KeyScope>, ScopeError> {
        var scopes: Set<KeyScope> = []
        for word in text.split(whereSeparator: { $0 == "," || $0 == " " }) {
            guard let scope = KeyScope(rawValue: String(word)) else { return .failure(ScopeError(word: String(word))) }
            scopes.insert(scope)
        }
        return .success(scopes)
    }

    /// `read,write,...` in declaration order: how scopes are stored.
    public static func text(_ scopes: Set<KeyScope>) -> String {
        Self.allCases.filter(scopes.contains).map(\.rawValue).joined(separator: ",")
    }

    public static func < (lhs: KeyScope, rhs: KeyScope) -> Bool {
        Self.allCases.firstIndex(of: lhs)! < Self.allCases.firstIndex(of: rhs)!
    }

    /// A word that names no scope.
    public struct ScopeError: Error, CustomStringConvertible {
        public let word: String
        public var description: String {
            "\"\(self.word)\" is not a scope: use \(KeyScope.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}

/// An API key as stored, without its secret (only the secret's SHA-256 is stored).
public struct APIKeyRecord: Sendable, Equatable {
    /// The public name of the key in lists, the audit log and `DELETE /v1/keys/{id}`.
    public var id: String
    public var owner: String
    public var name: String
    public var scopes: Set<KeyScope>
    public var createdAt: Date
    public var expiresAt: Date?
    /// When the key was last used, to the minute (a use within a minute of the last is not written).
    public var lastUsedAt: Date?
    public var revokedAt: Date?

    public init(
        id: String, owner: String, name: String, scopes: Set<KeyScope>, createdAt: Date, expiresAt: Date? = nil,
        lastUsedAt: Date? = nil, revokedAt: Date? = nil
    ) {
        self.id = id
        self.owner = owner
        self.name = name
        self.scopes = scopes
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
    }

    /// Why the key cannot be used at `now`, or nil when it can.
    public func refusal(at now: Date) -> String? {
        if self.revokedAt != nil { return "the API key was revoked" }
        if let expiresAt, now >= expiresAt { return "the API key has expired" }
        return nil
    }
}

/// An owner (a workspace): polls and keys belong to one.
public struct OwnerRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    public var createdAt: Date

    public init(id: String, name: String, createdAt: Date) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

/// One management action, as the audit log keeps it. Appended in the same transaction as the
/// change it records; never changed or removed afterwards.
public struct AuditEntry: Sendable, Equatable {
    /// Position in the log (0 before it is stored).
    public var sequence: Int64
    public var at: Date
    /// The acting key's id, or `cli` for the command line.
    public var key: String
    /// The owner the action was taken for.
    public var owner: String
    public var requestID: String?
    /// `poll.create`, `poll.update`, `poll.open`, `poll.close`, `poll.reveal`, `poll.delete`,
    /// `poll.export`, `key.create`, `key.revoke`, `owner.create`.
    public var action: String
    public var poll: String?
    /// A JSON object: what changed.
    public var detail: String

    public init(
        sequence: Int64 = 0, at: Date, key: String, owner: String, requestID: String?, action: String,
        poll: String? = nil, detail: String = "{}"
    ) {
        self.sequence = sequence
        self.at = at
        self.key = key
        self.owner = owner
        self.requestID = requestID
        self.action = action
        self.poll = poll
        self.detail = detail
    }
}

/// Which audit entries to read: all conditions that are set must hold.
public struct AuditQuery: Sendable, Equatable {
    public var owner: String?
    public var poll: String?
    public var key: String?
    public var from: Date?
    public var to: Date?
    /// Only entries after this sequence (a page's last).
    public var after: Int64 = 0

    public init(
        owner: String? = nil, poll: String? = nil, key: String? = nil, from: Date? = nil, to: Date? = nil,
        after: Int64 = 0
    ) {
        self.owner = owner
        self.poll = poll
        self.key = key
        self.from = from
        self.to = to
        self.after = after
    }
}

/// A key an owner's site signs voter tokens with (a JWT per voter): the HMAC secret of `HS256`
/// or the PEM public key of `ES256`. Polls with `signedVoters` take only voters whose token one
/// of their owner's keys verifies.
public struct VoterKeyRecord: Sendable, Equatable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case hs256 = "HS256"
        case es256 = "ES256"
    }

    /// The token header's `kid` that picks this key (tokens without one try each key).
    public var id: String
    public var owner: String
    public var algorithm: Algorithm
    /// The HMAC secret (`HS256`) or the PEM public key (`ES256`).
    public var material: String
    public var createdAt: Date

    public init(id: String, owner: String, algorithm: Algorithm, material: String, createdAt: Date) {
        self.id = id
        self.owner = owner
        self.algorithm = algorithm
        self.material = material
        self.createdAt = createdAt
    }
}
