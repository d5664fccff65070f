public import NIOCore

/// A poll's results at one version, encoded once: the bytes `GET /results` serves and every
/// live update carries.
public struct Snapshot: Sendable {
    public let pollID: String
    public let version: Int64
    /// True for the redacted variant (only the number of ballots).
    public let hidden: Bool
    /// True when it was made while the counters may be behind the store (`"stale": true`).
    public let stale: Bool
    /// The JSON body. Shared: every reader gets the same storage, no copy.
    public let body: ByteBuffer
    /// The compact form for live viewers that ask for it (`ResultsJSON.compact`); the body
    /// itself when not given.
    public let compact: ByteBuffer
    /// `W/"<poll>-<version>"`, `-h` added for the redacted variant and `-s` for a stale one: weak,
    /// because the same results may be sent gzip-compressed or not.
    public let etag: String
    /// `poll-<poll>`: the key a CDN purges this poll's cached results by.
    public let surrogateKey: String

    public init(
        pollID: String, version: Int64, hidden: Bool, stale: Bool = false, body: ByteBuffer, compact: ByteBuffer? = nil
    ) {
        self.pollID = pollID
        self.version = version
        self.hidden = hidden
        self.stale = stale
        self.body = body
        self.compact = compact ?? body
        self.etag = "W/\"\(pollID)-\(version)\(hidden ? "-h" : "")\(stale ? "-s" : "")\""
        self.surrogateKey = "poll-" + pollID
    }
}
