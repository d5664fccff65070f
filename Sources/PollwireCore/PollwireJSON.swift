public import Foundation

/// The JSON coders of the wire format and of stored definitions: dates as ISO 8601 with
/// milliseconds (`2026-11-29T00:37:57.123Z`), so a stored poll reads back equal.
public enum PollwireJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.dateStyle))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            if let date = Self.date(try container.decode(String.self)) { return date }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected an ISO 8601 date such as 2026-01-31T12:00:00Z")
        }
        return decoder
    }

    /// A date of the wire format: ISO 8601 with or without fractional seconds.
    public static func date(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Self.dateStyle) { return date }
        return try? Date(text, strategy: .iso8601)
    }

    static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// One decoder for every request: `JSONDecoder` is Sendable and its options never change
    /// after this, so sharing it saves building one (and its date closure) per vote.
    public static let shared = PollwireJSON.decoder()
}
