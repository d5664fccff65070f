/// Limits on a poll's definition, so that one poll cannot exhaust the server.
public enum PollLimits {
    public static let maxQuestions = 50
    public static let maxOptions = 100
    /// Ranking tallies keep a count per distinct ordering, so ranking questions stay small.
    public static let maxRankingOptions = 10
    public static let maxTitleLength = 500
    public static let maxPromptLength = 2000
    public static let maxLabelLength = 500
    /// The widest rating scale (values are tally keys).
    public static let maxScaleWidth = 101
    public static let maxTextLength = 10_000
    public static let maxAllowedOrigins = 50
}

extension Poll {
    /// Checks the definition: ids, kinds, options and limits. Throws the first problem found.
    public func validateDefinition() throws(ValidationError) {
        let title = self.title.trimmingWhitespace()
        if title.isEmpty { throw ValidationError(field: "title", "must not be empty") }
        if self.title.count > PollLimits.maxTitleLength {
            throw ValidationError(field: "title", "must be at most \(PollLimits.maxTitleLength) characters")
        }
        if self.questions.isEmpty { throw ValidationError(field: "questions", "must have at least one question") }
        if self.questions.count > PollLimits.maxQuestions {
            throw ValidationError(field: "questions", "must have at most \(PollLimits.maxQuestions) questions")
        }
        var questionIDs = Set<String>()
        for (index, question) in self.questions.enumerated() {
            let path = "questions[\(index)]"
            if !Identifier.isValid(question.id) {
                throw ValidationError(field: "\(path).id", "must be 1-64 characters of A-Z a-z 0-9 _ -")
            }
            if !questionIDs.insert(question.id).inserted {
                throw ValidationError(field: "\(path).id", "duplicates question id '\(question.id)'")
            }
            if question.prompt.count > PollLimits.maxPromptLength {
                throw ValidationError(
                    field: "\(path).prompt", "must be at most \(PollLimits.maxPromptLength) characters")
            }
            try question.validateDefinition(path: path)
        }
        if let opensAt, let closesAt, closesAt <= opensAt {
            throw ValidationError(field: "closesAt", "must be after opensAt")
        }
        try self.settings.validate()
    }
}

extension PollSettings {
    func validate() throws(ValidationError) {
        if self.allowedOrigins.count > PollLimits.maxAllowedOrigins {
            throw ValidationError(
                field: "settings.allowedOrigins", "must list at most \(PollLimits.maxAllowedOrigins) origins")
        }
        for (index, origin) in self.allowedOrigins.enumerated() where !Self.isOrigin(origin) {
            throw ValidationError(
                field: "settings.allowedOrigins[\(index)]",
                "must be an origin: http or https, a host and an optional port, no path (https://example.com)")
        }
        if self.signedVoters, self.dedupe != .voter {
            throw ValidationError(field: "settings.signedVoters", "needs dedupe \"voter\": the token names the voter")
        }
        if let voterLimit {
            if !(voterLimit.rate > 0 && voterLimit.rate <= 1000) {
                throw ValidationError(field: "settings.voterLimit.rate", "must be above 0 and at most 1000 per second")
            }
            if !(1...10_000).contains(voterLimit.burst) {
                throw ValidationError(field: "settings.voterLimit.burst", "must be between 1 and 10000")
            }
        }
        if let cache {
            let fields = [
                ("maxAge", cache.maxAge), ("sharedMaxAge", cache.sharedMaxAge),
                ("staleWhileRevalidate", cache.staleWhileRevalidate),
            ]
            for (name, seconds) in fields where !(0...ResultsCache.maxSeconds).contains(seconds) {
                throw ValidationError(
                    field: "settings.cache.\(name)", "must be between 0 and \(ResultsCache.maxSeconds) seconds")
            }
        }
    }

    /// `scheme://host[:port]` with scheme http or https, as browsers send in `Origin`.
    static func isOrigin(_ text: String) -> Bool {
        let rest: Substring
        if text.hasPrefix("https://") {
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            rest = text.dropFirst(7)
        } else {
            return false
        }
        guard !rest.isEmpty, rest.count <= 253 else { return false }
        return rest.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]".contains($0)) }
    }
}

extension Question {
    func validateDefinition(path: String) throws(ValidationError) {
        switch self.kind {
        case .single, .multiple, .ranking:
            let limit = self.kind == .ranking ? PollLimits.maxRankingOptions : PollLimits.maxOptions
            if self.options.count < 2 {
                throw ValidationError(field: "\(path).options", "must have at least 2 options")
            }
            if self.options.count > limit {
                throw ValidationError(field: "\(path).options", "must have at most \(limit) options")
            }
            var optionIDs = Set<String>()
            for (index, option) in self.options.enumerated() {
                if !Identifier.isValid(option.id) {
                    throw ValidationError(
                        field: "\(path).options[\(index)].id", "must be 1-64 characters of A-Z a-z 0-9 _ -")
                }
                if !optionIDs.insert(option.id).inserted {
                    throw ValidationError(field: "\(path).options[\(index)].id", "duplicates option id '\(option.id)'")
                }
                if option.label.count > PollLimits.maxLabelLength {
                    throw ValidationError(
                        field: "\(path).options[\(index)].label",
                        "must be at most \(PollLimits.maxLabelLength) characters")
                }
            }
        case .rating, .nps, .text:
            if !self.options.isEmpty {
                throw ValidationError(field: "\(path).options", "must be empty for a \(self.kind.rawValue) question")
            }
        }
        if self.kind == .multiple {
            let low = self.effectiveMinSelections
            let high = self.effectiveMaxSelections
            if low < 0 || low > self.options.count {
                throw ValidationError(field: "\(path).minSelections", "must be between 0 and the number of options")
            }
            if high < max(low, 1) || high > self.options.count {
                throw ValidationError(
                    field: "\(path).maxSelections", "must be between minSelections and the number of options")
            }
        } else if self.minSelections != nil || self.maxSelections != nil {
            throw ValidationError(field: "\(path).minSelections", "applies only to multiple-choice questions")
        }
        if self.kind == .rating {
            let scale = self.effectiveScale
            if scale.max <= scale.min || scale.max - scale.min + 1 > PollLimits.maxScaleWidth {
                throw ValidationError(
                    field: "\(path).scale", "must have min < max and at most \(PollLimits.maxScaleWidth) values")
            }
        } else if self.scale != nil {
            throw ValidationError(field: "\(path).scale", "applies only to rating questions")
        }
        if self.kind == .text {
            let length = self.effectiveMaxLength
            if length < 1 || length > PollLimits.maxTextLength {
                throw ValidationError(field: "\(path).maxLength", "must be between 1 and \(PollLimits.maxTextLength)")
            }
        } else if self.maxLength != nil {
            throw ValidationError(field: "\(path).maxLength", "applies only to text questions")
        }
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        var slice = self[...]
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return slice
    }
}
