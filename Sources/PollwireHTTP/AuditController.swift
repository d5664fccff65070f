import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore
public import PollwireEngine

/// `GET /v1/audit`: the audit log as NDJSON, oldest first, streamed page by page.
///
/// Admin scope; a key reads its own owner's entries, an operator key any owner's (`owner=`).
/// Filters: `poll`, `key`, `from` and `to` (ISO 8601 or seconds since 1970; `to` excluded),
/// `after` (a sequence: resume after the last entry read) and `limit`.
struct AuditController {
    let store: any PollStore
    static let pageSize = 1000

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/audit", use: self.list)
    }

    @Sendable func list(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.admin)
        let parameters = request.uri.queryParameters
        var query = AuditQuery(
            owner: principal.owner, poll: parameters.get("poll"), key: parameters.get("key"),
            from: try Self.date(parameters.get("from"), field: "from"),
            to: try Self.date(parameters.get("to"), field: "to"),
            after: try Self.number(parameters.get("after"), field: "after") ?? 0)
        if let owner = parameters.get("owner"), owner != principal.owner {
            guard principal.isOperator else {
                throw APIError(.forbidden, .forbidden, "only an operator key reads another owner's audit log")
            }
            query.owner = owner
        } else if principal.isOperator, parameters.get("owner") == nil {
            query.owner = nil
        }
        let limit = try Self.number(parameters.get("limit"), field: "limit") ?? Int64.max
        let store = self.store
        let first = query
        let body = ResponseBody { writer in
            var query = first
            var remaining = limit
            while remaining > 0 {
                let page = try await store.audit(query, limit: Int(min(Int64(Self.pageSize), remaining)))
                guard let last = page.last else { break }
                query.after = last.sequence
                remaining -= Int64(page.count)
                var text = ""
                for entry in page { text += AuditLines.line(entry) }
                try await writer.write(ByteBuffer(string: text))
                if page.count < Self.pageSize { break }
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-store"], body: body)
    }

    static func date(_ text: String?, field: String) throws -> Date? {
        guard let text else { return nil }
        if let seconds = Double(text), seconds.isFinite { return Date(timeIntervalSince1970: seconds) }
        if let date = try? Date(text, strategy: .iso8601) { return date }
        throw APIError.invalid(ValidationError(field: field, "must be an ISO 8601 time or seconds since 1970"))
    }

    static func number(_ text: String?, field: String) throws -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), value >= 0 else {
            throw APIError.invalid(ValidationError(field: field, "must be a whole number, 0 or more"))
        }
        return value
    }
}

/// The audit log's NDJSON lines (the API and `pollwire audit`).
public enum AuditLines {
    /// One entry as a line of NDJSON.
    public static func line(_ entry: AuditEntry) -> String {
        var line = "{\"sequence\":\(entry.sequence),\"at\":"
        JSONText.appendQuoted(entry.at.formatted(.iso8601), to: &line)
        line += ",\"key\":"
        JSONText.appendQuoted(entry.key, to: &line)
        line += ",\"owner\":"
        JSONText.appendQuoted(entry.owner, to: &line)
        line += ",\"requestId\":"
        if let id = entry.requestID { JSONText.appendQuoted(id, to: &line) } else { line += "null" }
        line += ",\"action\":"
        JSONText.appendQuoted(entry.action, to: &line)
        line += ",\"poll\":"
        if let poll = entry.poll { JSONText.appendQuoted(poll, to: &line) } else { line += "null" }
        line += ",\"detail\":\(entry.detail)}\n"
        return line
    }
}

/// What an action changed in a poll, as the audit log's `detail`: `{"field": {"from": .., "to": ..}}`
/// for every top-level field of the definition that differs (`updatedAt` aside).
enum PollAudit {
    static func changes(from old: Poll?, to new: Poll?) -> String {
        let before = Self.fields(old)
        let after = Self.fields(new)
        var changes: [String: Any] = [:]
        for name in Set(before.keys).union(after.keys) where name != "updatedAt" {
            let from = before[name] ?? NSNull()
            let to = after[name] ?? NSNull()
            if Self.json(from) != Self.json(to) { changes[name] = ["from": from, "to": to] }
        }
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: changes, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A value's JSON text, for comparing values read with `JSONSerialization`.
    private static func json(_ value: Any) -> Data? {
        try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys])
    }

    private static func fields(_ poll: Poll?) -> [String: Any] {
        guard let poll, let data = try? PollwireJSON.encoder().encode(poll),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }
}
