import Crypto
public import Foundation

/// A SHA-256 value held inline (four words, no heap allocation): a link of a ballot chain.
public struct ChainHash: Hashable, Sendable, CustomStringConvertible {
    var words: (UInt64, UInt64, UInt64, UInt64)

    /// The start of every chain: 32 zero bytes.
    public static let zero = ChainHash(words: (0, 0, 0, 0))

    init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    init(_ digest: SHA256Digest) {
        self.words = digest.withUnsafeBytes { raw in
            (
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            )
        }
    }

    /// From 32 bytes; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        self.words = (
            UInt64(bigEndian: words.0), UInt64(bigEndian: words.1), UInt64(bigEndian: words.2),
            UInt64(bigEndian: words.3)
        )
    }

    /// From 64 hexadecimal digits (either case); nil otherwise.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let high = Self.nibble(utf8[index]), let low = Self.nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        self.init(bytes: bytes)
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The 32 bytes, in order, for the length of `body`.
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        var big = (self.words.0.bigEndian, self.words.1.bigEndian, self.words.2.bigEndian, self.words.3.bigEndian)
        return try withUnsafeBytes(of: &big) { try body($0) }
    }

    public var bytes: [UInt8] { self.withBytes { Array($0) } }

    /// 64 lowercase hexadecimal digits.
    public var hex: String {
        String(unsafeUninitializedCapacity: 64) { buffer in
            var cursor = ByteCursor(UnsafeMutableRawBufferPointer(buffer))
            cursor.write(hex: self)
            return cursor.count
        }
    }

    public var description: String { self.hex }

    public static func == (lhs: ChainHash, rhs: ChainHash) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
            && lhs.words.3 == rhs.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.words.0)
        hasher.combine(self.words.1)
        hasher.combine(self.words.2)
        hasher.combine(self.words.3)
    }
}

/// Where one shard's chain of a poll stands: how many ballots it holds and the last one's hash.
public struct ChainLink: Sendable, Equatable {
    public var length: Int64
    public var head: ChainHash

    public init(length: Int64, head: ChainHash) {
        self.length = length
        self.head = head
    }

    public static let empty = ChainLink(length: 0, head: .zero)

    /// The chain with one more ballot, of `digest` (`BallotChain.digest`).
    public func appending(_ digest: ChainHash) -> ChainLink {
        ChainLink(length: self.length + 1, head: BallotChain.link(self.head, digest))
    }
}

/// The tamper-evident ballot log: each poll's ballots (per shard, in the order they were stored)
/// form a hash chain. A ballot's digest covers its canonical bytes (poll, voter key, revision,
/// time to the microsecond, canonical answers, the counters it added); its hash covers the
/// previous ballot's hash and its digest:
///
///     digest = SHA-256(canonical bytes)
///     hash_n = SHA-256(hash_{n-1} || digest_n),   hash_0 = 32 zero bytes
///
/// A poll's head is its one shard's head, or, with several shards (cluster nodes), the SHA-256
/// of `pollwire-heads-1` and each shard's number, length and head in shard order. Editing,
/// deleting, inserting or reordering a stored ballot breaks the chain from that ballot on.
public enum BallotChain {
    /// The digest of a ballot's canonical bytes: each field as a 4-byte big-endian length and
    /// its UTF-8 (a missing voter as length 0xFFFFFFFF), numbers as 8 bytes big-endian. A ballot
    /// sent with its own event time (`VoteCommand.CastAt`) ends with that time (8 bytes) and
    /// its late flag (1 byte); one without has the bytes it always had.
    public static func digest(
        poll: String, voter: String?, revision: Int64, storedAtMicros: Int64, answers: String, keys: String,
        castAt: VoteCommand.CastAt? = nil
    ) -> ChainHash {
        var poll = poll
        var voter = voter
        var answers = answers
        var keys = keys
        // The canonical bytes are written into one buffer (on the stack when they fit) and hashed
        // with one update: eight small updates cost more than the hashing.
        let size =
            4 + Self.prefix.utf8CodeUnitCount + 4 + poll.utf8.count + 4 + (voter?.utf8.count ?? 0) + 8 + 8 + 4
            + answers.utf8.count + 4 + keys.utf8.count + (castAt == nil ? 0 : 9)
        return withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buffer in
            var cursor = ByteCursor(buffer)
            Self.prefix.withUTF8Buffer { cursor.write(lengthPrefixed: $0) }
            poll.withUTF8 { cursor.write(lengthPrefixed: $0) }
            if voter != nil {
                voter!.withUTF8 { cursor.write(lengthPrefixed: $0) }
            } else {
                cursor.write(bigEndian: UInt32.max)
            }
            cursor.write(bigEndian: UInt64(bitPattern: revision))
            cursor.write(bigEndian: UInt64(bitPattern: storedAtMicros))
            answers.withUTF8 { cursor.write(lengthPrefixed: $0) }
            keys.withUTF8 { cursor.write(lengthPrefixed: $0) }
            if let castAt {
                cursor.write(bigEndian: UInt64(bitPattern: castAt.micros))
                cursor.write(byte: castAt.late ? 1 : 0)
            }
            var hasher = SHA256()
            hasher.update(bufferPointer: cursor.written)
            return ChainHash(hasher.finalize())
        }
    }

    private static let prefix: StaticString = "pollwire-ballot-1"

    /// The next link: SHA-256(previous || digest).
    public static func link(_ previous: ChainHash, _ digest: ChainHash) -> ChainHash {
        var both = (
            previous.words.0.bigEndian, previous.words.1.bigEndian, previous.words.2.bigEndian,
            previous.words.3.bigEndian, digest.words.0.bigEndian, digest.words.1.bigEndian, digest.words.2.bigEndian,
            digest.words.3.bigEndian
        )
        var hasher = SHA256()
        withUnsafeBytes(of: &both) { hasher.update(bufferPointer: $0) }
        return ChainHash(hasher.finalize())
    }

    /// A poll's head from its shards' chains (empty shards left out); zero when it has none.
    public static func head(_ shards: [Int32: ChainLink]) -> ChainHash {
        var chained = 0
        var only = ChainHash.zero
        for link in shards.values where link.length > 0 {
            chained += 1
            only = link.head
        }
        if chained <= 1 { return only }
        var hasher = SHA256()
        Self.add("pollwire-heads-1", to: &hasher)
        for (shard, link) in shards.filter({ $0.value.length > 0 }).sorted(by: { $0.key < $1.key }) {
            var number = UInt32(bitPattern: shard).bigEndian
            withUnsafeBytes(of: &number) { hasher.update(bufferPointer: $0) }
            Self.add(link.length, to: &hasher)
            link.head.withBytes { hasher.update(bufferPointer: $0) }
        }
        return ChainHash(hasher.finalize())
    }

    /// Microseconds since 1970 of `date`, truncated: the time a ballot is chained (and stored) with.
    public static func micros(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    private static func add(_ text: String, to hasher: inout SHA256) {
        var text = text
        text.withUTF8 { bytes in
            var length = UInt32(bytes.count).bigEndian
            withUnsafeBytes(of: &length) { hasher.update(bufferPointer: $0) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(bytes))
        }
    }

    private static func add(_ number: Int64, to hasher: inout SHA256) {
        var big = number.bigEndian
        withUnsafeBytes(of: &big) { hasher.update(bufferPointer: $0) }
    }
}

/// What a voter keeps of their stored ballot: its hash and its place in its shard's chain.
public struct BallotReceipt: Sendable, Equatable {
    public var hash: ChainHash
    /// 1 for the shard's first ballot of the poll.
    public var position: Int64
    public var shard: Int32

    public init(hash: ChainHash, position: Int64, shard: Int32) {
        self.hash = hash
        self.position = position
        self.shard = shard
    }
}
