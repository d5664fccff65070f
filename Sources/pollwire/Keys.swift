import ArgumentParser
import Foundation
import PollwireCore
import PollwireEngine
import PollwireHTTP

/// `pollwire keys create|list|revoke`: API keys for the management API.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys.", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key and print it once; only its SHA-256 hash is stored.")

        @Option(help: "A name to remember the key by.")
        var name: String = "api key"

        @Option(help: "The owner (workspace) the key belongs to; it must exist (`pollwire owners create`).")
        var owner: String = Poll.defaultOwner

        @Option(help: "Scopes, comma-separated: read, write, export, admin, operator.")
        var scope: String = KeyScope.text(KeyScope.ownerDefault)

        @Option(help: "When the key stops working: a duration (30d, 12h, 90m) or an ISO 8601 time.")
        var expires: String?

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let scopes: Set<KeyScope>
            switch KeyScope.parse(self.scope) {
            case .success(let parsed) where !parsed.isEmpty: scopes = parsed
            case .success: throw ValidationError("--scope must name at least one scope")
            case .failure(let error): throw ValidationError("--scope: \(error)")
            }
            let now = Date()
            let expiresAt = try self.expires.map { try Self.expiry($0, now: now) }
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let (secret, key) = APIKeys.make(
                owner: self.owner, name: self.name, scopes: scopes, expiresAt: expiresAt, at: now)
            try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await stores.pollStore.insertAPIKey(
                    key, hash: APIKeys.hash(secret),
                    audit: AuditEntry(
                        at: now, key: "cli", owner: key.owner, requestID: nil, action: "key.create",
                        detail: APIKeys.detail(key)))
            }
            // The secret alone on standard output (scripts read it); the id on standard error.
            FileHandle.standardError.write(Data("\(key.id) (\(KeyScope.text(scopes)), owner \(key.owner))\n".utf8))
            print(secret)
        }

        /// `30d`, `12h`, `90m`, `45s` from now, or an ISO 8601 time in the future.
        static func expiry(_ text: String, now: Date) throws -> Date {
            let units: [Character: Double] = ["d": 86_400, "h": 3_600, "m": 60, "s": 1]
            if let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count > 0 {
                return now.addingTimeInterval(count * unit)
            }
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw ValidationError("--expires must be a duration (30d, 12h, 90m, 45s) or an ISO 8601 time")
            }
            guard date > now else { throw ValidationError("--expires must be in the future") }
            return date
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List API keys (never their secrets): id, owner, scopes, name, created, expires, last used, revoked.")

        @Option(help: "Only this owner's keys.")
        var owner: String?

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let owner = self.owner
            let keys = try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await stores.pollStore.apiKeys(owner: owner)
            }
            func date(_ date: Date?) -> String { date?.formatted(.iso8601) ?? "-" }
            print("id\towner\tscopes\tname\tcreated\texpires\tlast used\trevoked")
            for key in keys {
                print(
                    [
                        key.id, key.owner, KeyScope.text(key.scopes), key.name, date(key.createdAt),
                        date(key.expiresAt),
                        date(key.lastUsedAt), date(key.revokedAt),
                    ].joined(separator: "\t"))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an API key by its id: every node refuses it from its next request.")

        @Argument(help: "The key's id (key_...), as `keys list` shows it.")
        var id: String

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let id = self.id
            let found = try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                guard let key = try await stores.pollStore.apiKeys(owner: nil).first(where: { $0.id == id }) else {
                    return false
                }
                let now = Date()
                return try await stores.pollStore.revokeAPIKey(
                    id: id, owner: nil, at: now,
                    audit: AuditEntry(
                        at: now, key: "cli", owner: key.owner, requestID: nil, action: "key.revoke",
                        detail: APIKeys.detail(key)))
            }
            guard found else { throw ValidationError("there is no API key \(id)") }
            print("revoked \(id)")
        }
    }
}

/// `pollwire owners create|list`: owners (workspaces) of polls and keys.
struct Owners: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage owners (workspaces).", subcommands: [Create.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an owner.")

        @Argument(help: "The owner's id: 1 to 64 letters, digits, - or _.")
        var id: String

        @Option(help: "A name to show (the id when not given).")
        var name: String?

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            guard OwnerIDs.isValidID(self.id) else {
                throw ValidationError("the owner id \(OwnerIDs.idRule)")
            }
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let owner = OwnerRecord(id: self.id, name: self.name ?? self.id, createdAt: Date())
            let created = try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await stores.pollStore.insertOwner(
                    owner,
                    audit: AuditEntry(
                        at: owner.createdAt, key: "cli", owner: owner.id, requestID: nil, action: "owner.create"))
            }
            guard created else { throw ValidationError("the owner \(owner.id) exists") }
            print(owner.id)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List owners: id, name, created.")

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let reader = try await makeConfigReader(self.options)
            let store = try StoreSettings(reader: reader)
            let owners = try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
                try await stores.pollStore.owners()
            }
            print("id\tname\tcreated")
            for owner in owners { print("\(owner.id)\t\(owner.name)\t\(owner.createdAt.formatted(.iso8601))") }
        }
    }
}

/// `pollwire audit`: the audit log as NDJSON, oldest first.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the audit log (NDJSON, oldest first).")

    @Option(help: "Only this owner's entries.")
    var owner: String?

    @Option(help: "Only entries about this poll.")
    var poll: String?

    @Option(help: "Only entries by this key id (or cli).")
    var key: String?

    @Option(help: "Only entries at or after this ISO 8601 time.")
    var since: String?

    @Option(help: "Only entries before this ISO 8601 time.")
    var until: String?

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        func date(_ text: String?, _ flag: String) throws -> Date? {
            guard let text else { return nil }
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw ValidationError("--\(flag) must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z")
            }
            return date
        }
        let first = AuditQuery(
            owner: self.owner, poll: self.poll, key: self.key, from: try date(self.since, "since"),
            to: try date(self.until, "until"))
        let reader = try await makeConfigReader(self.options)
        let store = try StoreSettings(reader: reader)
        try await store.withStores(logger: makeLogger(reader, label: "pollwire")) { stores in
            var query = first
            while true {
                let page = try await stores.pollStore.audit(query, limit: 1000)
                for entry in page { FileHandle.standardOutput.write(Data(AuditLines.line(entry).utf8)) }
                guard let last = page.last, page.count == 1000 else { break }
                query.after = last.sequence
            }
        }
    }
}
