public import NIOCore

/// Writes bytes into memory reserved once for a whole piece (a vote's answer, a ballot's
/// canonical bytes), without the capacity and uniqueness checks a `ByteBuffer` makes per
/// write. The caller reserves enough: every write traps past the end.
public struct ByteCursor {
    private let memory: UnsafeMutableRawBufferPointer
    /// The bytes written so far.
    public private(set) var count = 0

    public init(_ memory: UnsafeMutableRawBufferPointer) {
        self.memory = memory
    }

    /// What has been written, in the reserved memory.
    public var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: self.memory[0..<self.count]) }

    public mutating func write(_ bytes: UnsafeRawBufferPointer) {
        precondition(self.count + bytes.count <= self.memory.count, "ByteCursor: reserved too little")
        if let base = bytes.baseAddress, bytes.count > 0 {
            (self.memory.baseAddress! + self.count).copyMemory(from: base, byteCount: bytes.count)
        }
        self.count += bytes.count
    }

    public mutating func write(_ text: StaticString) {
        self.write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    public mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { self.write(UnsafeRawBufferPointer($0)) }
    }

    public mutating func write(byte: UInt8) {
        precondition(self.count < self.memory.count, "ByteCursor: reserved too little")
        self.memory[self.count] = byte
        self.count += 1
    }

    /// `value` as its bytes, most significant first.
    public mutating func write<Value: FixedWidthInteger>(bigEndian value: Value) {
        withUnsafeBytes(of: value.bigEndian) { self.write($0) }
    }

    /// `bytes` after their count as 4 bytes, most significant first.
    public mutating func write(lengthPrefixed bytes: UnsafeBufferPointer<UInt8>) {
        self.write(bigEndian: UInt32(bytes.count))
        self.write(UnsafeRawBufferPointer(bytes))
    }

    /// `value` in decimal (at most 20 bytes).
    public mutating func write(decimal value: Int64) {
        if value < 0 { self.write(byte: UInt8(ascii: "-")) }
        var rest = value.magnitude
        var digits = 1
        var scale: UInt64 = 1
        while rest / scale >= 10 {
            scale *= 10
            digits += 1
        }
        precondition(self.count + digits <= self.memory.count, "ByteCursor: reserved too little")
        for _ in 0..<digits {
            self.memory[self.count] = UInt8(ascii: "0") + UInt8(rest / scale)
            rest %= scale
            scale /= 10
            self.count += 1
        }
    }

    /// `hash` as 64 lowercase hexadecimal digits.
    public mutating func write(hex hash: ChainHash) {
        precondition(self.count + 64 <= self.memory.count, "ByteCursor: reserved too little")
        let digits: StaticString = "0123456789abcdef"
        let table = digits.utf8Start
        let words = hash.words
        withUnsafeBytes(of: words) { raw in
            for index in 0..<4 {
                let word = raw.load(fromByteOffset: 8 * index, as: UInt64.self)
                for shift in stride(from: 60, through: 0, by: -4) {
                    self.memory[self.count] = table[Int((word >> UInt64(shift)) & 15)]
                    self.count += 1
                }
            }
        }
    }
}

extension ByteBuffer {
    /// Runs `body` with a cursor over `reserving` writable bytes and keeps what it wrote.
    public mutating func write(reserving bytes: Int, _ body: (inout ByteCursor) -> Void) {
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes) { raw in
            var cursor = ByteCursor(UnsafeMutableRawBufferPointer(rebasing: raw[0..<bytes]))
            body(&cursor)
            return cursor.count
        }
    }
}
