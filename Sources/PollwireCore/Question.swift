/// One question of a poll.
public struct Question: Codable, Sendable, Equatable {
    /// What kind of answer a question takes.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Exactly one option.
        case single
        /// Between `minSelections` and `maxSelections` distinct options.
        case multiple
        /// An integer in `scale`.
        case rating
        /// Net Promoter Score: an integer from 0 to 10.
        case nps
        /// Options in order of preference (a prefix of a full ranking is allowed).
        case ranking
        /// Free text, up to `maxLength` characters.
        case text
    }

    /// An option of a choice or ranking question.
    public struct Option: Codable, Sendable, Equatable {
        public var id: String
        public var label: String

        public init(id: String, label: String) {
            self.id = id
            self.label = label
        }
    }

    /// An inclusive integer range for rating questions.
    public struct Scale: Codable, Sendable, Equatable {
        public var min: Int
        public var max: Int

        public init(min: Int, max: Int) {
            self.min = min
            self.max = max
        }
    }

    public var id: String
    public var kind: Kind
    public var prompt: String
    public var options: [Option]
    /// Whether every ballot must answer this question. Default true.
    public var required: Bool
    /// For `multiple`: the fewest options a ballot may pick. Default 1.
    public var minSelections: Int?
    /// For `multiple`: the most options a ballot may pick. Default: all of them.
    public var maxSelections: Int?
    /// For `rating`: the allowed values. Default 1...5. `nps` is always 0...10.
    public var scale: Scale?
    /// For `text`: the longest answer in characters. Default 500.
    public var maxLength: Int?

    public init(
        id: String,
        kind: Kind,
        prompt: String,
        options: [Option] = [],
        required: Bool = true,
        minSelections: Int? = nil,
        maxSelections: Int? = nil,
        scale: Scale? = nil,
        maxLength: Int? = nil
    ) {
        self.id = id
        self.kind = kind
        self.prompt = prompt
        self.options = options
        self.required = required
        self.minSelections = minSelections
        self.maxSelections = maxSelections
        self.scale = scale
        self.maxLength = maxLength
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, prompt, options, required, minSelections, maxSelections, scale, maxLength
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.kind = try container.decode(Kind.self, forKey: .kind)
        self.prompt = try container.decodeIfPresent(String.self, forKey: .prompt) ?? ""
        self.options = try container.decodeIfPresent([Option].self, forKey: .options) ?? []
        self.required = try container.decodeIfPresent(Bool.self, forKey: .required) ?? true
        self.minSelections = try container.decodeIfPresent(Int.self, forKey: .minSelections)
        self.maxSelections = try container.decodeIfPresent(Int.self, forKey: .maxSelections)
        self.scale = try container.decodeIfPresent(Scale.self, forKey: .scale)
        self.maxLength = try container.decodeIfPresent(Int.self, forKey: .maxLength)
    }

    // MARK: Effective limits

    /// The values a rating or NPS answer may take.
    public var effectiveScale: Scale {
        switch self.kind {
        case .nps: Scale(min: 0, max: 10)
        default: self.scale ?? Scale(min: 1, max: 5)
        }
    }

    /// The fewest options a `multiple` answer may pick.
    public var effectiveMinSelections: Int { self.minSelections ?? 1 }

    /// The most options a `multiple` answer may pick.
    public var effectiveMaxSelections: Int { self.maxSelections ?? self.options.count }

    /// The longest text answer, in characters.
    public var effectiveMaxLength: Int { self.maxLength ?? 500 }
}
