/// A client's input broke a rule; `field` names the part that is wrong (a JSON path such as
/// `questions[1].options` or `answers.q1`).
public struct ValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(self.field): \(self.message)" }
}
