/// Why the ingestor could not take or store a vote. Nothing of the vote was acknowledged.
public struct IngestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String

        /// The ingest queue is full: shed load, the client retries later.
        public static let overloaded = Code(name: "overloaded")
        /// The server is shutting down and takes no new votes.
        public static let shuttingDown = Code(name: "shutting_down")
        /// The store failed the transaction; nothing of the batch was stored.
        public static let storageFailure = Code(name: "storage_failure")
        /// The store did not answer within the commit deadline, or the circuit breaker is open
        /// after repeated failures. The vote is not acknowledged; a retry with the same
        /// `Idempotency-Key` is safe (if a late commit stored it, the retry replays it).
        public static let storeUnavailable = Code(name: "store_unavailable")

        public var description: String { self.name }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code): \(self.message)" }
}
