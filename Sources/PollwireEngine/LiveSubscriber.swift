/// A viewer of live results, as the Hub sees it: something that takes the newest frame
/// without blocking. Transports (SSE, WebSocket) implement it.
public protocol LiveSubscriber: AnyObject, Sendable {
    /// Hands over the newest frame of a poll. Must not block: a subscriber that has not written
    /// the previous frame yet replaces it (the latest snapshot wins; no backlog grows).
    func offer(_ frame: LiveFrame)
    /// Asks for a heartbeat if nothing else is pending (keeps proxies from closing idle streams).
    func ping()
    /// Since when the subscriber has been trying to write one frame, if it is writing now.
    var writingSince: ContinuousClock.Instant? { get }
    /// Closes the subscriber's connection with a reason (the Hub calls it for stuck viewers).
    func close(reason: String)
    /// Whether the viewer proved it voted in `pollID` (shown full results of an `after_vote` poll).
    func hasVoted(_ pollID: String) -> Bool
    /// The group this subscriber's offers are batched in, if any (default: none, offered one by one).
    var deliveryGroup: (any LiveDeliveryGroup)? { get }
}

extension LiveSubscriber {
    public var deliveryGroup: (any LiveDeliveryGroup)? { nil }
}

/// Subscribers that live on one thread (a SwiftNIO event loop) take a whole publish tick's
/// frames in ONE hop to that thread, instead of one hop (and one wake-up) per subscriber.
public protocol LiveDeliveryGroup: AnyObject, Sendable {
    /// Offers each frame to its subscriber, on the group's thread.
    func offer(_ batch: [(subscriber: any LiveSubscriber, frame: LiveFrame)])
}
