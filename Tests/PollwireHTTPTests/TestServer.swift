import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import PollwireCore
import PollwireEngine
import PollwireHTTP
import PollwireSQLite
import Testing

/// A live server on 127.0.0.1:0 over a real SQLite file, and an API key for it.
struct TestServer {
    let client: any TestClientProtocol
    let key: String
    let parts: PollwireApplication.Parts
    let database: SQLiteDatabase

    static func run<T: Sendable>(
        settings: PollwireSettings = PollwireSettings(),
        voteStore: (@Sendable (SQLiteDatabase) -> any VoteStore)? = nil,
        changeFeed: (@Sendable (ChangeSink, any PollStore) -> any ChangeFeed)? = nil,
        _ body: @Sendable (TestServer) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pollwire-http-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try SQLiteDatabase(path: directory.appendingPathComponent("pollwire.sqlite").path)
        let pollStore = SQLitePollStore(database: database)
        let (key, record) = APIKeys.make(
            owner: Poll.defaultOwner, name: "test", scopes: Set(KeyScope.allCases), expiresAt: nil, at: Date())
        try await pollStore.insertAPIKey(record, hash: APIKeys.hash(key), audit: nil)
        var settings = settings
        settings.host = "127.0.0.1"
        settings.port = 0
        var makeFeed: (@Sendable (ChangeSink) -> any ChangeFeed)?
        if let changeFeed { makeFeed = { @Sendable sink in changeFeed(sink, pollStore) } }
        let (app, parts) = try await PollwireApplication.make(
            settings: settings, pollStore: pollStore,
            voteStore: voteStore?(database) ?? SQLiteVoteStore(database: database),
            changeFeed: makeFeed)
        return try await app.test(.live) { client in
            let server = TestServer(client: client, key: key, parts: parts, database: database)
            for _ in 0..<500 where !parts.book.isLoaded { try await Task.sleep(for: .milliseconds(10)) }
            try #require(parts.book.isLoaded, "the server did not load its tallies within 5 s")
            return try await body(server)
        }
    }

    // MARK: Requests

    func request(
        _ method: HTTPRequest.Method, _ uri: String, json: String? = nil, auth: Bool = false,
        headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var fields = headers
        if json != nil, fields[.contentType] == nil { fields[.contentType] = "application/json" }
        if auth { fields[.authorization] = "Bearer \(self.key)" }
        return try await self.client.executeRequest(
            uri: uri, method: method, headers: fields, body: json.map { ByteBuffer(string: $0) })
    }

    /// Creates a poll through the API and returns its id.
    func createPoll(_ json: String = TestServer.lunch) async throws -> String {
        let response = try await self.request(.post, "/v1/polls", json: json, auth: true)
        #expect(response.status == .created, "\(String(buffer: response.body))")
        return try response.object()["id"] as! String
    }

    func vote(_ poll: String, _ json: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await self.request(.post, "/v1/polls/\(poll)/votes", json: json, headers: headers)
    }

    static let lunch = """
        {"title": "Lunch?",
         "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
                        "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}],
         "settings": {"visibility": "public", "dedupe": "voter", "allowChange": false}}
        """

    static func lunch(settings: String) -> String {
        """
        {"title": "Lunch?",
         "questions": [{"id": "q1", "kind": "single", "prompt": "Where?",
                        "options": [{"id": "a", "label": "Pizza"}, {"id": "b", "label": "Sushi"}]}],
         "settings": \(settings)}
        """
    }
}

extension TestResponse {
    func object() throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(self.body.readableBytesView)) as? [String: Any])
    }

    var text: String { String(buffer: self.body) }

    /// The `error.code` of an error response.
    var errorCode: String? {
        ((try? self.object())?["error"] as? [String: Any])?["code"] as? String
    }

    var errorField: String? {
        ((try? self.object())?["error"] as? [String: Any])?["field"] as? String
    }
}
