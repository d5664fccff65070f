import Crypto
import NIOCore
import PollwireCore
import Testing

@testable import PollwireEngine

/// `ByteCursor` writes what the slower writers it replaced wrote: decimals as `String(value)`,
/// hashes as 64 lowercase digits, the canonical bytes of a ballot as the chain hashes them.
struct ByteCursorTests {
    static func written(reserving bytes: Int, _ body: (inout ByteCursor) -> Void) -> String {
        var buffer = ByteBuffer()
        buffer.write(reserving: bytes, body)
        return String(buffer: buffer)
    }

    @Test(arguments: [Int64.min, -1_234_567, -10, -1, 0, 1, 9, 10, 99, 100, 1_000_000_007, Int64.max])
    func decimalsAsSwiftWritesThem(_ value: Int64) {
        #expect(Self.written(reserving: 20) { $0.write(decimal: value) } == String(value))
    }

    @Test func aHashAsSixtyFourLowercaseDigits() throws {
        var generator = SplitMix64(seed: 7)
        for _ in 0..<200 {
            let bytes = (0..<32).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let hash = try #require(ChainHash(bytes: bytes))
            let expected = bytes.map {
                String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16)
            }
            .joined()
            #expect(Self.written(reserving: 64) { $0.write(hex: hash) } == expected)
            #expect(hash.hex == expected)
            #expect(ChainHash(hex: expected.uppercased()) == hash)
        }
    }

    @Test func piecesFollowEachOtherInOrder() {
        let text = Self.written(reserving: 40) { out in
            out.write("{\"a\":")
            out.write(decimal: -5)
            out.write(",\"b\":\"")
            out.write("héllo")
            out.write(byte: UInt8(ascii: "\""))
            out.write("}")
        }
        #expect(text == "{\"a\":-5,\"b\":\"héllo\"}")
    }

    /// The digest is SHA-256 of the documented layout, written here by hand with Foundation.
    @Test func theDigestHashesTheDocumentedLayout() {
        func field(_ text: String) -> [UInt8] {
            withUnsafeBytes(of: UInt32(text.utf8.count).bigEndian, Array.init) + Array(text.utf8)
        }
        for voter in ["u-17", nil] as [String?] {
            var bytes = field("pollwire-ballot-1") + field("p_1")
            bytes += voter.map(field) ?? [0xFF, 0xFF, 0xFF, 0xFF]
            bytes += withUnsafeBytes(of: Int64(2).bigEndian, Array.init)
            bytes += withUnsafeBytes(of: Int64(1_764_000_000_123_456).bigEndian, Array.init)
            bytes += field("{\"q1\":\"a\"}") + field("q1=a")
            let expected = ChainHash(SHA256.hash(data: bytes))
            let digest = BallotChain.digest(
                poll: "p_1", voter: voter, revision: 2, storedAtMicros: 1_764_000_000_123_456,
                answers: "{\"q1\":\"a\"}",
                keys: "q1=a")
            #expect(digest == expected)
            // A ballot sent with its own event time: the same bytes, then that time and the late flag.
            for late in [false, true] {
                let castAt = VoteCommand.CastAt(micros: -1_234_567, late: late)
                let withCastAt =
                    bytes + withUnsafeBytes(of: Int64(-1_234_567).bigEndian, Array.init) + [late ? 1 : 0]
                #expect(
                    BallotChain.digest(
                        poll: "p_1", voter: voter, revision: 2, storedAtMicros: 1_764_000_000_123_456,
                        answers: "{\"q1\":\"a\"}", keys: "q1=a", castAt: castAt)
                        == ChainHash(SHA256.hash(data: withCastAt)))
            }
        }
    }
}
