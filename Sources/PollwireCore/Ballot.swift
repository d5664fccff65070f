/// A ballot checked against its poll: answers in question order, the canonical form that is
/// stored, and the tally counters it adds to.
public struct Ballot: Sendable, Equatable {
    /// Answers by question id, in the poll's question order; unanswered optional questions are absent.
    public var answers: [(question: String, answer: Answer)]
    /// Canonical JSON of the answers (question order, no spaces): stored, exported, and compared
    /// to tell "the same ballot again" from "a different ballot".
    public var canonical: String
    /// Counters this ballot adds one to, `TallyKey.ballots` included.
    public var keys: [TallyKey]

    public static func == (lhs: Ballot, rhs: Ballot) -> Bool { lhs.canonical == rhs.canonical }

    /// The deltas of counting this ballot (`sign` 1) or uncounting it (`sign` -1).
    public func deltas(sign: Int64 = 1) -> [TallyDelta] {
        self.keys.map { TallyDelta(key: $0, amount: sign) }
    }
}

extension Poll {
    /// Checks `answers` against this poll's questions and builds the ballot.
    ///
    /// Unknown question ids, missing required answers, unknown or repeated options, selection
    /// counts, scale bounds and text length are checked; the error names the field.
    public func ballot(answers: [String: Answer]) throws(ValidationError) -> Ballot {
        for questionID in answers.keys where self.question(questionID) == nil {
            throw ValidationError(field: "answers.\(questionID)", "is not a question of this poll")
        }
        var ordered: [(question: String, answer: Answer)] = []
        ordered.reserveCapacity(answers.count)
        var keys: [TallyKey] = [.ballots]
        var canonical = "{"
        for question in self.questions {
            guard let answer = answers[question.id] else {
                if question.required {
                    throw ValidationError(field: "answers.\(question.id)", "is required")
                }
                continue
            }
            try question.check(answer, into: &keys)
            if ordered.count > 0 { canonical.append(",") }
            ordered.append((question.id, answer))
            canonical.append("\"")
            canonical.append(question.id)
            canonical.append("\":")
            answer.appendCanonical(to: &canonical)
        }
        canonical.append("}")
        if ordered.isEmpty {
            throw ValidationError(field: "answers", "must answer at least one question")
        }
        return Ballot(answers: ordered, canonical: canonical, keys: keys)
    }
}

extension Question {
    /// The field an error about this question's answer names (made only for an error).
    private var field: String { "answers.\(self.id)" }

    fileprivate func check(_ answer: Answer, into keys: inout [TallyKey]) throws(ValidationError) {
        switch (self.kind, answer) {
        case (.single, .options(let picked)):
            guard picked.count == 1 else { throw ValidationError(field: field, "must pick exactly one option") }
            try self.checkKnown(picked)
            keys.append(TallyKey(question: self.id, key: picked[0]))
        case (.multiple, .options(let picked)):
            let low = self.effectiveMinSelections
            let high = self.effectiveMaxSelections
            guard picked.count >= low, picked.count <= high else {
                throw ValidationError(field: field, "must pick between \(low) and \(high) options")
            }
            try self.checkKnown(picked)
            for option in picked { keys.append(TallyKey(question: self.id, key: option)) }
        case (.ranking, .options(let order)):
            guard !order.isEmpty else { throw ValidationError(field: field, "must rank at least one option") }
            try self.checkKnown(order)
            keys.append(TallyKey(question: self.id, key: order.joined(separator: ">")))
        case (.rating, .number(let value)), (.nps, .number(let value)):
            let scale = self.effectiveScale
            guard value >= scale.min, value <= scale.max else {
                throw ValidationError(field: field, "must be an integer from \(scale.min) to \(scale.max)")
            }
            keys.append(TallyKey(question: self.id, key: String(value)))
        case (.text, .text(let text)):
            guard text.count <= self.effectiveMaxLength else {
                throw ValidationError(field: field, "must be at most \(self.effectiveMaxLength) characters")
            }
            guard !text.trimmingWhitespace().isEmpty else { throw ValidationError(field: field, "must not be empty") }
        case (.single, _), (.multiple, _), (.ranking, _):
            throw ValidationError(field: field, "must be a list of option ids")
        case (.rating, _), (.nps, _):
            throw ValidationError(field: field, "must be an integer")
        case (.text, _):
            throw ValidationError(field: field, "must be a string")
        }
        keys.append(.responses(self.id))
    }

    private func checkKnown(_ picked: [String]) throws(ValidationError) {
        for (index, option) in picked.enumerated() {
            guard self.options.contains(where: { $0.id == option }) else {
                throw ValidationError(field: "\(field)[\(index)]", "'\(option)' is not an option of this question")
            }
            if picked[..<index].contains(option) {
                throw ValidationError(field: "\(field)[\(index)]", "'\(option)' is picked twice")
            }
        }
    }
}

extension Answer {
    func appendCanonical(to output: inout String) {
        switch self {
        case .options(let options):
            output.append("[")
            for (index, option) in options.enumerated() {
                if index > 0 { output.append(",") }
                // Ids are checked: no escaping needed.
                output.append("\"")
                output.append(option)
                output.append("\"")
            }
            output.append("]")
        case .number(let number):
            output.append(String(number))
        case .text(let text):
            JSONText.appendQuoted(text, to: &output)
        }
    }
}
