import HTTPTypes
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The `Date` header value (RFC 9110 IMF-fixdate), formatted at most once a second and shared:
/// what Hummingbird adds to its responses, for the responses the fast path writes itself.
enum HTTPDate {
    private static let cached = Mutex<(second: Int, text: String, line: ByteBuffer)>((0, "", ByteBuffer()))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static var now: String { Self.current.text }

    /// `Date: ...` and the blank line that ends a head: what `ByteFrontHandler` writes after a
    /// head it keeps. Shared, like the text.
    static var headLine: ByteBuffer { Self.current.line }

    private static var current: (text: String, line: ByteBuffer) {
        var seconds = time(nil)
        return Self.cached.withLock { cached in
            if cached.second == seconds { return (cached.text, cached.line) }
            var parts = tm()
            gmtime_r(&seconds, &parts)
            func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : String(value) }
            let text =
                "\(Self.days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(Self.months[Int(parts.tm_mon)]) "
                + "\(1900 + parts.tm_year) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
            cached = (seconds, text, ByteBuffer(string: "Date: \(text)\r\n\r\n"))
            return (text, cached.line)
        }
    }
}

/// A response head as HTTP/1.1 bytes up to (not including) the blank line: what the byte front
/// writes from bytes made once (the prepared 503, a results head kept per snapshot).
enum HTTP1Head {
    static func encode(_ status: HTTPResponse.Status, _ fields: HTTPFields) -> ByteBuffer {
        var bytes = ByteBuffer(string: "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        for field in fields { bytes.writeString("\(field.name.rawName): \(field.value)\r\n") }
        return bytes
    }
}
