import PollwireCore
import PollwireEngine

/// The polls a request may name: the book's, and in a cluster also one another node created a
/// moment ago whose notification has not arrived here yet (the change feed looks it up in the
/// store). A client that creates a poll through one node and votes through the next finds it.
struct PollFinder: Sendable {
    let book: TallyBook
    let feed: (any ChangeFeed)?

    /// The poll, or nil when neither the book nor (in a cluster) the store holds it.
    func poll(_ id: String) async -> Poll? {
        if let poll = self.book.poll(id) { return poll }
        guard let feed, await feed.catchUp(id) else { return nil }
        return self.book.poll(id)
    }

    /// Whether the book holds the poll once a miss was looked up in the store.
    func knows(_ id: String) async -> Bool {
        await self.poll(id) != nil
    }
}
