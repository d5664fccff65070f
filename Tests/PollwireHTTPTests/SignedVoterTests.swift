import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import JWTKit
import NIOCore
import PollwireEngine
import PollwireHTTP
import Testing

/// Polls with `signedVoters`: only voters whose token the poll owner's site signed are counted.
@Suite struct SignedVoterTests {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var poll: String
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    static let secret = "a site secret of at least thirty-two bytes"
    static let voterToken = HTTPField.Name("Pollwire-Voter-Token")!

    func sign(
        _ voter: String, poll: String, secret: String = SignedVoterTests.secret, expires: TimeInterval = 600,
        kid: String? = nil
    ) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(
            Claims(sub: .init(value: voter), exp: .init(value: Date().addingTimeInterval(expires)), poll: poll),
            kid: kid.map { JWKIdentifier(string: $0) })
    }

    func vote(
        _ server: TestServer, _ poll: String, token: String?, body: String = #"{"answers": {"q1": ["a"]}}"#
    )
        async throws -> TestResponse
    {
        try await server.vote(poll, body, headers: token.map { [Self.voterToken: $0] } ?? [:])
    }

    func signedPoll(_ server: TestServer) async throws -> String {
        try await server.createPoll(TestServer.lunch(settings: #"{"dedupe": "voter", "signedVoters": true}"#))
    }

    @Test func onlyTokensTheOwnerSignedAreCounted() async throws {
        try await TestServer.run { server in
            let registered = try await server.request(
                .post, "/v1/voter-keys", json: #"{"algorithm": "HS256", "secret": "\#(Self.secret)"}"#, auth: true)
            #expect(registered.status == .created, "\(registered.text)")
            #expect(!registered.text.contains(Self.secret))
            let poll = try await self.signedPoll(server)
            let other = try await self.signedPoll(server)

            let missing = try await self.vote(server, poll, token: nil)
            #expect(missing.status == .unauthorized)
            #expect(missing.errorCode == "voter_token_required")
            let forged = try await self.vote(
                server, poll,
                token: try await self.sign("mallory", poll: poll, secret: "another secret, also quite long enough"))
            #expect(forged.status == .unauthorized)
            #expect(forged.errorCode == "voter_token_invalid")
            // Another owner's registered key does not vouch for this owner's voters.
            let rivalSecret = "the rival owner's secret, long enough too"
            #expect(
                try await server.request(.post, "/v1/owners", json: #"{"id": "rival", "name": "Rival"}"#, auth: true)
                    .status == .created)
            let rivalKey = try await server.request(
                .post, "/v1/keys", json: #"{"owner": "rival", "scopes": ["admin"]}"#, auth: true)
            let rivalSecretKey = try #require(try rivalKey.object()["secret"] as? String)
            let rivalRegistered = try await server.request(
                .post, "/v1/voter-keys", json: #"{"algorithm": "HS256", "secret": "\#(rivalSecret)"}"#,
                headers: [.authorization: "Bearer \(rivalSecretKey)"])
            #expect(rivalRegistered.status == .created)
            let rival = try await self.vote(
                server, poll, token: try await self.sign("r", poll: poll, secret: rivalSecret))
            #expect(rival.errorCode == "voter_token_invalid")
            let expired = try await self.vote(server, poll, token: try await self.sign("old", poll: poll, expires: -60))
            #expect(expired.status == .unauthorized)
            #expect(expired.errorCode == "voter_token_expired")
            let elsewhere = try await self.vote(server, poll, token: try await self.sign("u1", poll: other))
            #expect(elsewhere.status == .forbidden)
            #expect(elsewhere.errorCode == "voter_token_wrong_poll")
            let garbage = try await self.vote(server, poll, token: "not.a.jwt")
            #expect(garbage.errorCode == "voter_token_invalid")
            let mismatch = try await self.vote(
                server, poll, token: try await self.sign("u1", poll: poll),
                body: #"{"voter": "someone-else", "answers": {"q1": ["a"]}}"#)
            #expect(mismatch.status == .unprocessableContent)
            #expect(mismatch.errorField == "voter")

            let accepted = try await self.vote(server, poll, token: try await self.sign("u1", poll: poll))
            #expect(accepted.status == .created, "\(accepted.text)")
            // A fresh token for the same voter is the same voter: deduped.
            let again = try await self.vote(
                server, poll, token: try await self.sign("u1", poll: poll),
                body: #"{"answers": {"q1": ["b"]}}"#)
            #expect(again.status == .conflict)
            let wildcard = try await self.vote(server, poll, token: try await self.sign("u2", poll: "*"))
            #expect(wildcard.status == .created)

            let results = try await server.request(.get, "/v1/polls/\(poll)/results")
            #expect(try results.object()["total"] as? Int == 2)
            // A poll without signedVoters is as before.
            let open = try await server.createPoll()
            #expect(try await server.vote(open, #"{"voter": "x", "answers": {"q1": ["a"]}}"#).status == .created)
        }
    }

    @Test func es256KeysAndRemovedKeys() async throws {
        try await TestServer.run { server in
            let privateKey = P256.Signing.PrivateKey()
            let pem = privateKey.publicKey.pemRepresentation
            let bad = try await server.request(
                .post, "/v1/voter-keys", json: #"{"algorithm": "ES256", "publicKey": "nonsense"}"#, auth: true)
            #expect(bad.status == .unprocessableContent)
            #expect(bad.errorField == "publicKey")
            let short = try await server.request(
                .post, "/v1/voter-keys", json: #"{"algorithm": "HS256", "secret": "short"}"#, auth: true)
            #expect(short.errorField == "secret")
            let body = try String(
                decoding: JSONSerialization.data(withJSONObject: ["algorithm": "ES256", "publicKey": pem]),
                as: UTF8.self)
            let registered = try await server.request(.post, "/v1/voter-keys", json: body, auth: true)
            #expect(registered.status == .created, "\(registered.text)")
            let id = try #require(try registered.object()["id"] as? String)
            let poll = try await self.signedPoll(server)

            let keys = JWTKeyCollection()
            await keys.add(
                ecdsa: try ES256PrivateKey(pem: privateKey.pemRepresentation), kid: JWKIdentifier(string: id))
            let token = try await keys.sign(
                Claims(sub: .init(value: "ann"), exp: .init(value: Date().addingTimeInterval(60)), poll: poll),
                kid: JWKIdentifier(string: id))
            #expect(try await self.vote(server, poll, token: token).status == .created)

            let listed = try await server.request(.get, "/v1/voter-keys", auth: true)
            #expect((try listed.object()["voterKeys"] as? [[String: Any]])?.first?["id"] as? String == id)
            #expect(try await server.request(.delete, "/v1/voter-keys/\(id)", auth: true).status == .noContent)
            // Nodes read an owner's keys again within a second.
            try await Task.sleep(for: .milliseconds(1100))
            let token2 = try await keys.sign(
                Claims(sub: .init(value: "bob"), exp: .init(value: Date().addingTimeInterval(60)), poll: poll),
                kid: JWKIdentifier(string: id))
            #expect(try await self.vote(server, poll, token: token2).errorCode == "voter_token_invalid")
            let settings = try await server.request(
                .post, "/v1/polls", json: TestServer.lunch(settings: #"{"dedupe": "device", "signedVoters": true}"#),
                auth: true)
            #expect(settings.errorField == "settings.signedVoters")
        }
    }
}
