import Foundation
import HTTPTypes
import Hummingbird
import PollwireCore
import PollwireEngine

/// `GET /v1/polls/{id}/proof?ballot=<hash>`: what lets anyone check that a ballot (the hash its
/// voter got as a receipt) is in the chain that the poll's published head commits to.
///
/// The answer holds the ballot's shard and position, the hash before it and its digest (so
/// `SHA-256(previous || digest) = ballot`), the digests of every later ballot of its shard (fold
/// them on: `h = SHA-256(h || d)` ends at `shardHead`), every shard's length and head, and the
/// poll's `head` at `version`: the `chain` its results carry at that version
/// (`BallotChain.head`). The chain is read from the store and recomputed: a stored chain that
/// does not lead to the head the server holds answers 409 `chain_mismatch`.
struct ProofController {
    let store: any PollStore
    let book: TallyBook
    let finder: PollFinder
    let limits: EdgeLimits
    /// Most later ballots a proof lists (its size grows with them: 65 bytes each).
    static let maxFollowing = 200_000

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/proof", use: self.proof)
    }

    @Sendable func proof(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let asked = request.uri.queryParameters.get("ballot"), let ballot = ChainHash(hex: String(asked)) else {
            throw APIError.invalid(ValidationError(field: "ballot", "must be a ballot hash: 64 hexadecimal digits"))
        }
        try self.limits.proofFromAddress(self.limits.clientAddress(request, channel: context.channel))
        guard await self.finder.poll(id) != nil, let (version, chains) = self.book.chains(of: id) else {
            throw APIError.notFound("poll")
        }
        // Find the ballot, then the digests after it in its shard, up to the length published.
        var found: (shard: Int32, position: Int64, previous: ChainHash, digest: ChainHash)?
        var previousHashes: [Int32: ChainHash] = [:]
        var following: [ChainHash] = []
        var recomputed = ChainHash.zero
        var after: Int64 = 0
        scan: while true {
            let page = try await self.store.chainedBallots(pollID: id, after: after, limit: 1000)
            for stored in page {
                guard let shard = stored.shard, let position = stored.position, let hash = stored.chain,
                    position <= (chains[shard]?.length ?? 0)
                else { continue }
                let digest = stored.digest(poll: id)
                if let found {
                    guard shard == found.shard else { continue }
                    guard following.count < Self.maxFollowing else {
                        throw APIError(
                            .unprocessableContent, .invalidField,
                            "the proof would list more than \(Self.maxFollowing) later ballots", field: "ballot")
                    }
                    following.append(digest)
                    recomputed = BallotChain.link(recomputed, digest)
                    if position == chains[shard]?.length { break scan }
                } else if hash == ballot {
                    let previous = previousHashes[shard] ?? .zero
                    found = (shard, position, previous, digest)
                    recomputed = BallotChain.link(previous, digest)
                    if position == chains[shard]?.length { break scan }
                } else {
                    previousHashes[shard] = hash
                }
            }
            guard let last = page.last, page.count == 1000 else { break }
            after = last.sequence
        }
        guard let found else { throw APIError.notFound("ballot") }
        guard let shardHead = chains[found.shard], BallotChain.link(found.previous, found.digest) == ballot,
            recomputed == shardHead.head
        else {
            throw APIError(
                .conflict, .chainMismatch, "the stored chain does not lead to the head this server publishes")
        }
        var text = "{\"poll\":"
        JSONText.appendQuoted(id, to: &text)
        text += ",\"version\":\(version),\"head\":\"\(BallotChain.head(chains).hex)\""
        text += ",\"ballot\":\"\(ballot.hex)\",\"shard\":\(found.shard),\"position\":\(found.position)"
        text += ",\"previous\":\"\(found.previous.hex)\",\"digest\":\"\(found.digest.hex)\""
        text += ",\"shardHead\":\"\(shardHead.head.hex)\",\"shardLength\":\(shardHead.length)"
        text.reserveCapacity(text.utf8.count + following.count * 67 + 64 * chains.count)
        text += ",\"following\":["
        for (index, digest) in following.enumerated() {
            if index > 0 { text += "," }
            text += "\"\(digest.hex)\""
        }
        text += "],\"shards\":["
        for (index, (shard, link)) in chains.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { text += "," }
            text += "{\"shard\":\(shard),\"length\":\(link.length),\"head\":\"\(link.head.hex)\"}"
        }
        text += "]}"
        return Response.json(.ok, text, headers: [.cacheControl: "no-store"])
    }
}

extension APIError.Code {
    public static let chainMismatch = Self("chain_mismatch")
}
