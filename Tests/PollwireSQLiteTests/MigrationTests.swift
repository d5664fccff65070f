import Foundation
import GRDB
import PollwireCore
import PollwireEngine
import Testing

@testable import PollwireSQLite

/// Files made by earlier releases, migrated: before owners existed, its polls and keys belong
/// to the default owner and its keys keep every power they had; before window counts existed,
/// its ballots are counted.
@Suite struct MigrationTests {
    /// A file migrated up to `step` as that release left it, holding poll `old` with
    /// `definition` and what `rows` writes; removed with `directory`.
    static func oldFile(
        upTo step: String, definition: String, _ rows: @escaping @Sendable (Database) throws -> Void
    ) async throws -> (directory: URL, path: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-mig-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("pollwire.sqlite").path
        let old = try DatabasePool(path: path)
        try SQLiteDatabase.migrator.migrate(old, upTo: step)
        try await old.write { db in
            try db.execute(
                sql: "INSERT INTO polls (id, definition, status, version, created_at) VALUES ('old', ?, 'open', 0, 0)",
                arguments: [definition])
            try rows(db)
        }
        try old.close()
        return (directory, path)
    }

    @Test func dataFromBeforeOwnersMovesToTheDefaultOwner() async throws {
        let poll = Poll(
            id: "old", title: "Old", questions: [Question(id: "q", kind: .nps, prompt: "?")], createdAt: Date(),
            updatedAt: Date())
        // The v1 schema and rows as the previous release wrote them (a definition without "owner").
        let definition = String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
            .replacingOccurrences(of: "\"owner\":\"default\",", with: "")
        #expect(!definition.contains("owner"))
        let (directory, path) = try await Self.oldFile(upTo: "v1", definition: definition) { db in
            try db.execute(sql: "INSERT INTO api_keys (hash, name, created_at) VALUES ('abcdef0123456789ff', 'k', 0)")
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try SQLiteDatabase(path: path)
        let store = SQLitePollStore(database: database)
        let polls = try await store.loadPolls(latestTextLimit: 1)
        #expect(polls.map(\.poll.owner) == ["default"])
        let key = try #require(try await store.apiKey(hash: "abcdef0123456789ff"))
        #expect(key.id == "key_abcdef0123456789")
        #expect(key.owner == "default")
        #expect(key.scopes == Set(KeyScope.allCases))
        #expect(key.refusal(at: Date()) == nil)
        #expect(try await store.owners().map(\.id) == ["default"])
    }

    /// Ballots stored before window counts existed are counted by the migration, each in the
    /// second it was stored in, as a recount of them makes.
    @Test func ballotsFromBeforeWindowsAreCountedByTheMigration() async throws {
        var poll = Poll(
            id: "old", title: "Old",
            questions: [Question(id: "q", kind: .single, prompt: "?", options: [.init(id: "a", label: "A")])],
            createdAt: Date(), updatedAt: Date())
        poll.status = .open
        let keys = StoredKeys.encode(try poll.ballot(answers: ["q": .options(["a"])]).keys)
        let (directory, path) = try await Self.oldFile(upTo: "v3-chain", definition: try SQLitePollStore.encode(poll)) {
            db in
            for (index, time) in [1_700_000_000.25, 1_700_000_000.75, 1_700_000_003.5].enumerated() {
                try db.execute(
                    sql: """
                        INSERT INTO ballots (poll_id, voter, revision, answers, keys, version, created_at)
                        VALUES ('old', ?, 0, '{"q":["a"]}', ?, ?, ?)
                        """,
                    arguments: ["v\(index)", keys, index + 1, time])
            }
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try SQLiteDatabase(path: path)
        let store = SQLitePollStore(database: database)
        let rows = try await store.windowCounts(pollID: "old", from: .min, to: .max)
        #expect(
            rows.filter { $0.key == .ballots }.map { [$0.second, $0.count] } == [
                [1_700_000_000, 2], [1_700_000_003, 1],
            ])
        #expect(rows == CastWindows.recount(try await store.chainedBallots(pollID: "old", after: 0, limit: 10)))
    }
}
