import Foundation
import GRDB
import PollwireCore
import PollwireEngine
import PollwirePostgres
import PollwireSQLite
import Testing

/// The tamper-evident ballot log on both stores: ballots edited, deleted, inserted or moved
/// directly in the SQLite file or in PostgreSQL are found by `ChainVerifier` (what `pollwire
/// verify` runs), at the ballot where they show.
@Suite(.serialized) struct BallotChainTests {
    enum Tamper: String, CaseIterable, Sendable {
        case edit, delete, deleteLast, insert, reorder
    }

    /// Raw SQL on the store under test.
    struct Raw {
        let execute: @Sendable (String) async throws -> Void
        let seqs: @Sendable (String) async throws -> [Int64]
    }

    @Test(arguments: StoreConformanceTests.Kind.allCases)
    func everyKindOfTamperingIsFoundWhereItIs(_ kind: StoreConformanceTests.Kind) async throws {
        switch kind {
        case .sqlite:
            let directory = temporaryDirectory("chain")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let database = try SQLiteDatabase(path: directory.appendingPathComponent("pollwire.sqlite").path)
            let raw = Raw(
                execute: { sql in try await database.pool.write { try $0.execute(sql: sql) } },
                seqs: { poll in
                    try await database.pool.read {
                        try Int64.fetchAll(
                            $0, sql: "SELECT seq FROM ballots WHERE poll_id = ? ORDER BY seq", arguments: [poll])
                    }
                })
            try await self.check(
                kind, polls: SQLitePollStore(database: database), votes: SQLiteVoteStore(database: database), raw: raw)
        case .postgres:
            let postgres = try ThrowawayPostgres.start()
            defer { postgres.destroy() }
            let database = try PostgresDatabase(url: postgres.url, maxConnections: 2)
            let pool = Task { await database.run() }
            defer { pool.cancel() }
            try await database.migrate()
            let raw = Raw(
                execute: { sql in _ = try postgres.query(sql) },
                seqs: { poll in
                    try postgres.query("SELECT seq FROM ballots WHERE poll_id = '\(poll)' ORDER BY seq").map {
                        Int64($0[0])!
                    }
                })
            try await self.check(
                kind, polls: PostgresPollStore(database: database), votes: PostgresVoteStore(database: database),
                raw: raw)
        }
    }

    func check(
        _ kind: StoreConformanceTests.Kind, polls: any PollStore, votes: any VoteStore, raw: Raw
    ) async throws {
        let shard = kind == .sqlite ? "" : ", chain_shard"
        for tamper in Tamper.allCases {
            let poll = StoreConformanceTests().poll(PollSettings(allowChange: true))
            try await polls.insert(poll)
            // Six commits: eight voters, one changing their mind, and a ballot with no voter.
            for round in 0..<6 {
                var batch = [
                    try StoreConformanceTests().vote(poll, "v:\(2 * round)", "a"),
                    try StoreConformanceTests().vote(poll, "v:\(2 * round + 1)", "b"),
                ]
                if round == 3 { batch.append(try StoreConformanceTests().vote(poll, "v:0", "b")) }
                if round == 4 { batch.append(try StoreConformanceTests().vote(poll, nil, "a")) }
                let result = try await votes.commit(batch, at: Date())
                #expect(result.receipts.count == batch.count)
                #expect(result.receipts.allSatisfy { $0 != nil })
            }
            let clean = try await ChainVerifier.verify(polls, pollID: poll.id)
            #expect(clean.first?.ballots == 14, "\(kind)")
            // The head the results publish is the one the verifier recomputes.
            let stored = try #require(try await polls.loadPolls(latestTextLimit: 0).first { $0.poll.id == poll.id })
            #expect(BallotChain.head(stored.chains) == clean.first?.head)

            let seqs = try await raw.seqs(poll.id)
            #expect(seqs.count == 14)
            var expected: Int64? = nil
            switch tamper {
            case .edit:
                try await raw.execute(
                    "UPDATE ballots SET answers = replace(answers, '\"a\"', '\"b\"') WHERE seq = \(seqs[4])")
                expected = seqs[4]
            case .delete:
                try await raw.execute("DELETE FROM ballots WHERE seq = \(seqs[4])")
                expected = seqs[5]
            case .deleteLast:
                try await raw.execute("DELETE FROM ballots WHERE seq = \(seqs[13])")
            case .insert:
                try await raw.execute(
                    """
                    INSERT INTO ballots (poll_id, voter, revision, answers, keys, version, created_at, chain, chain_position\(shard))
                    SELECT poll_id, 'v:intruder', revision, answers, keys, version, created_at, chain, chain_position\(shard)
                    FROM ballots WHERE seq = \(seqs[4])
                    """)
                expected = try await raw.seqs(poll.id).last
            case .reorder:
                try await raw.execute(
                    """
                    UPDATE ballots SET answers = o.answers, keys = o.keys, chain = o.chain, chain_position = o.chain_position
                    FROM (SELECT seq, answers, keys, chain, chain_position FROM ballots) AS o
                    WHERE (ballots.seq = \(seqs[4]) AND o.seq = \(seqs[5])) OR (ballots.seq = \(seqs[5]) AND o.seq = \(seqs[4]))
                    """)
                expected = seqs[4]
            }
            do {
                _ = try await ChainVerifier.verify(polls, pollID: poll.id)
                Issue.record("\(kind) \(tamper): not found")
            } catch let problem as ChainProblem {
                #expect(problem.poll == poll.id)
                #expect(problem.sequence == expected, "\(kind) \(tamper): \(problem)")
                if tamper == .deleteLast { #expect(problem.message.contains("missing"), "\(problem)") }
            }
        }
    }
}
