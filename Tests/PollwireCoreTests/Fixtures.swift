import Foundation
import PollwireCore

/// A poll with one question of every kind.
func everyKindPoll(settings: PollSettings = PollSettings()) -> Poll {
    let options = ["a", "b", "c"].map { Question.Option(id: $0, label: $0.uppercased()) }
    return Poll(
        id: "p1", title: "Every kind",
        questions: [
            Question(id: "single", kind: .single, prompt: "One", options: options),
            Question(
                id: "multi", kind: .multiple, prompt: "Some", options: options, minSelections: 1, maxSelections: 2),
            Question(id: "rate", kind: .rating, prompt: "Rate", scale: .init(min: 1, max: 5)),
            Question(id: "nps", kind: .nps, prompt: "Recommend?"),
            Question(id: "rank", kind: .ranking, prompt: "Order", options: options),
            Question(id: "text", kind: .text, prompt: "Say", required: false, maxLength: 20),
        ],
        settings: settings, createdAt: Date(timeIntervalSince1970: 0), updatedAt: Date(timeIntervalSince1970: 0))
}
