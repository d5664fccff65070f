import Foundation
import GRDB
import PollwireCore
import PollwireEngine
import Testing

@testable import PollwireSQLite

/// A file made before owners existed: after the migration its polls and keys belong to the
/// default owner, and its keys keep every power they had.
@Suite struct OwnerMigrationTests {
    @Test func dataFromBeforeOwnersMovesToTheDefaultOwner() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-mig-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("pollwire.sqlite").path
        let poll = Poll(
            id: "old", title: "Old", questions: [Question(id: "q", kind: .nps, prompt: "?")], createdAt: Date(),
            updatedAt: Date())
        // The v1 schema and rows as the previous release wrote them (a definition without "owner").
        let definition = String(decoding: try PollwireJSON.encoder().encode(poll), as: UTF8.self)
            .replacingOccurrences(of: "\"owner\":\"default\",", with: "")
        #expect(!definition.contains("owner"))
        do {
            let old = try DatabasePool(path: path)
            try SQLiteDatabase.migrator.migrate(old, upTo: "v1")
            try await old.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO polls (id, definition, status, version, created_at) VALUES ('old', ?, 'open', 0, 0)",
                    arguments: [definition])
                try db.execute(
                    sql: "INSERT INTO api_keys (hash, name, created_at) VALUES ('abcdef0123456789ff', 'k', 0)")
            }
            try old.close()
        }
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
}
