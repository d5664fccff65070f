/// A ballot's answer to one question, as it arrives on the wire.
///
/// Option ids for single, multiple and ranking; an integer for rating and NPS; a string for text.
public enum Answer: Codable, Sendable, Equatable {
    case options([String])
    case number(Int)
    case text(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let options = try? container.decode([String].self) {
            self = .options(options)
        } else if let number = try? container.decode(Int.self) {
            self = .number(number)
        } else if let text = try? container.decode(String.self) {
            self = .text(text)
        } else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "an answer is a list of option ids, an integer or a string")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .options(let options): try container.encode(options)
        case .number(let number): try container.encode(number)
        case .text(let text): try container.encode(text)
        }
    }
}
