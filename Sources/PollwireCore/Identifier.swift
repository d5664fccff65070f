/// Identifiers: poll ids are generated; question and option ids are chosen by the poll's author.
public enum Identifier {
    /// The alphabet of generated ids: URL-safe, no look-alikes removed (ids are machine-read).
    static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)

    /// A new random id of `length` base-62 characters (16 characters carry ~95 bits).
    public static func random(length: Int = 16) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8]()
        bytes.reserveCapacity(length)
        for _ in 0..<length {
            bytes.append(alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `id` may name a question or an option: 1 to 64 of `A-Z a-z 0-9 _ -`.
    ///
    /// The restriction keeps ids safe as tally keys (`>` and `#` are reserved there) and in URLs.
    public static func isValid(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= 64 else { return false }
        return id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A)
                || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F || byte == 0x2D
        }
    }
}
