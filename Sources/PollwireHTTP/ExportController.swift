import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore
import PollwireEngine

/// `GET /v1/polls/{id}/export?format=csv|ndjson`: every stored ballot, streamed page by page
/// (`pageSize` rows per read), never loaded whole into memory.
struct ExportController {
    let store: any PollStore
    let finder: PollFinder
    let now: @Sendable () -> Date
    static let pageSize = 1000

    func addRoutes(to group: RouterGroup<PollwireRequestContext>) {
        group.get("/polls/{id}/export", use: self.export)
    }

    @Sendable func export(_ request: Request, context: PollwireRequestContext) async throws -> Response {
        let principal = try context.principal(.export)
        let id = try context.parameters.require("id")
        guard let poll = await self.finder.poll(id), principal.owns(poll) else { throw APIError.notFound("poll") }
        let format = request.uri.queryParameters.get("format") ?? "csv"
        guard format == "csv" || format == "ndjson" else {
            throw APIError(.badRequest, .badRequest, "format must be csv or ndjson")
        }
        try await self.store.appendAudit(
            principal.audit("poll.export", at: self.now(), poll: id, detail: "{\"format\":\"\(format)\"}"))
        let store = self.store
        let csv = format == "csv"
        let body = ResponseBody { writer in
            if csv { try await writer.write(ByteBuffer(string: Self.csvHeader(poll))) }
            var after: Int64 = 0
            let decoder = PollwireJSON.decoder()
            while true {
                let page = try await store.ballots(pollID: id, after: after, limit: Self.pageSize)
                guard let last = page.last else { break }
                after = last.sequence
                var text = ""
                for ballot in page {
                    text += csv ? try Self.csvRow(ballot, poll: poll, decoder: decoder) : Self.ndjsonRow(ballot)
                }
                try await writer.write(ByteBuffer(string: text))
                if page.count < Self.pageSize { break }
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: csv ? "text/csv; charset=utf-8" : "application/x-ndjson",
                .contentDisposition: "attachment; filename=\"\(id).\(format)\"",
                .cacheControl: "no-store",
            ],
            body: body)
    }

    static func ndjsonRow(_ ballot: StoredBallot) -> String {
        var line = "{\"sequence\":\(ballot.sequence),\"voter\":"
        if let voter = ballot.voter { JSONText.appendQuoted(voter, to: &line) } else { line += "null" }
        line += ",\"revision\":\(ballot.revision),\"version\":\(ballot.version),\"createdAt\":"
        JSONText.appendQuoted(ballot.createdAt.formatted(.iso8601), to: &line)
        if let castAt = ballot.castAt {
            line += ",\"castAt\":"
            JSONText.appendQuoted(Self.time(castAt), to: &line)
            line += ",\"late\":\(castAt.late)"
        }
        line += ",\"answers\":\(ballot.answers)}\n"
        return line
    }

    /// A `castAt` as the wire format writes times (to the millisecond).
    static func time(_ castAt: VoteCommand.CastAt) -> String {
        Date(timeIntervalSince1970: Double(castAt.micros) / 1_000_000).formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func csvHeader(_ poll: Poll) -> String {
        (["sequence", "voter", "revision", "version", "created_at", "cast_at", "late"] + poll.questions.map(\.id))
            .map(csvField).joined(separator: ",") + "\r\n"
    }

    static func csvRow(_ ballot: StoredBallot, poll: Poll, decoder: JSONDecoder) throws -> String {
        let answers = try decoder.decode([String: Answer].self, from: Data(ballot.answers.utf8))
        var fields = [
            String(ballot.sequence), ballot.voter ?? "", String(ballot.revision), String(ballot.version),
            ballot.createdAt.formatted(.iso8601), ballot.castAt.map(Self.time) ?? "",
            ballot.castAt.map { String($0.late) } ?? "",
        ]
        for question in poll.questions {
            switch answers[question.id] {
            case .options(let options): fields.append(options.joined(separator: ";"))
            case .number(let number): fields.append(String(number))
            case .text(let text): fields.append(text)
            case nil: fields.append("")
            }
        }
        return fields.map(csvField).joined(separator: ",") + "\r\n"
    }

    /// RFC 4180 quoting; a leading `= + - @` is prefixed with `'` so spreadsheets do not run it.
    static func csvField(_ value: String) -> String {
        var value = value
        if let first = value.first, "=+-@".contains(first), Int(value) == nil { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
