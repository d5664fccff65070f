import Foundation
import GRDB
import HTTPTypes
import HummingbirdTesting
import PollwireEngine
import PollwireSQLite
import Testing

/// A voter's receipt (`ballot` in a vote's answer) and `GET /v1/polls/{id}/proof`: anyone can
/// fold the proof up to the head the poll's results publish.
@Suite struct BallotProofTests {
    func hash(_ text: Any?) throws -> ChainHash { try #require((text as? String).flatMap { ChainHash(hex: $0) }) }

    @Test func aReceiptFoldsUpToThePublishedHead() async throws {
        try await TestServer.run { server in
            let poll = try await server.createPoll()
            var receipts: [[String: Any]] = []
            for voter in 0..<5 {
                let answer = try await server.vote(poll, #"{"voter": "v\#(voter)", "answers": {"q1": ["a"]}}"#)
                #expect(answer.status == .created)
                receipts.append(try #require(try answer.object()["ballot"] as? [String: Any]))
            }
            #expect(receipts.map { $0["position"] as? Int } == [1, 2, 3, 4, 5])
            let results = try await server.request(.get, "/v1/polls/\(poll)/results").object()
            let published = try self.hash(results["chain"])
            #expect(results["version"] as? Int == 5)

            let mine = try self.hash(receipts[1]["hash"])
            let response = try await server.request(.get, "/v1/polls/\(poll)/proof?ballot=\(mine.hex)")
            #expect(response.status == .ok, "\(response.text)")
            let proof = try response.object()
            #expect(proof["position"] as? Int == 2)
            #expect(proof["version"] as? Int == 5)
            // What a voter does with it: their hash from the two parts, then every later digest.
            let previous = try self.hash(proof["previous"])
            let digest = try self.hash(proof["digest"])
            #expect(previous == (try self.hash(receipts[0]["hash"])))
            #expect(BallotChain.link(previous, digest) == mine)
            let following = try #require(proof["following"] as? [String]).map { try self.hash($0) }
            #expect(following.count == 3)
            let end = following.reduce(mine) { BallotChain.link($0, $1) }
            #expect(end == (try self.hash(proof["shardHead"])))
            #expect(end == (try self.hash(receipts[4]["hash"])))
            let shards = try #require(proof["shards"] as? [[String: Any]])
            let heads = Dictionary(
                uniqueKeysWithValues: try shards.map {
                    (
                        Int32($0["shard"] as! Int),
                        ChainLink(length: Int64($0["length"] as! Int), head: try self.hash($0["head"]))
                    )
                })
            #expect(BallotChain.head(heads) == published)
            #expect((try self.hash(proof["head"])) == published)

            let unknown = try await server.request(.get, "/v1/polls/\(poll)/proof?ballot=\(ChainHash.zero.hex)")
            #expect(unknown.status == .notFound)
            let malformed = try await server.request(.get, "/v1/polls/\(poll)/proof?ballot=xyz")
            #expect(malformed.status == .unprocessableContent)
            #expect(malformed.errorField == "ballot")

            // A later ballot edited in the file: the stored chain no longer leads to the head.
            try await server.database.pool.write { db in
                try db.execute(
                    sql:
                        "UPDATE ballots SET answers = replace(answers, '\"a\"', '\"b\"') WHERE poll_id = ? AND voter LIKE ?",
                    arguments: [poll, "%v3"])
            }
            let broken = try await server.request(.get, "/v1/polls/\(poll)/proof?ballot=\(mine.hex)")
            #expect(broken.status == .conflict)
            #expect(broken.errorCode == "chain_mismatch")
        }
    }
}
