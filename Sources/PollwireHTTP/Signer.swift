import Crypto
import Foundation
import PollwireCore

/// HMAC-SHA256 with the server's secret: device tokens and results receipts, which a client
/// can hold but cannot mint.
public struct Signer: Sendable {
    let secret: [UInt8]

    /// - Parameter secret: at least 32 random bytes, kept by the store (`secrets` table).
    public init(secret: [UInt8]) {
        self.secret = secret
    }

    /// SymmetricKey is not Sendable; a key is made per use from the stored bytes (one small copy).
    var key: SymmetricKey { SymmetricKey(data: self.secret) }

    /// 32 fresh random bytes for a new secret.
    public static func makeSecret() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    func signature(of message: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: self.key)
        return Data(code).base64URLEncoded()
    }

    func verify(_ signature: some StringProtocol, of message: String) -> Bool {
        guard let data = Data(base64URLEncoded: String(signature)) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(data, authenticating: Data(message.utf8), using: self.key)
    }

    // MARK: Device tokens

    /// A new device token `<id>.<signature>`; the id is the voter's dedupe key.
    public func issueDeviceToken() -> String {
        let id = Identifier.random(length: 22)
        return "\(id).\(self.signature(of: "device:\(id)"))"
    }

    /// The device id of a genuine token, nil for a forged or malformed one.
    public func deviceID(of token: String) -> String? {
        let parts = token.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, parts[0].count <= 64 else { return nil }
        let id = String(parts[0])
        return self.verify(parts[1], of: "device:\(id)") ? id : nil
    }

    // MARK: Receipts

    /// The receipt a voter gets for a poll: shown to `GET /results` of an `after_vote` poll.
    public func receipt(pollID: String) -> String {
        self.signature(of: "receipt:\(pollID)")
    }

    /// Whether `receipt` (nil when the viewer showed none) is the receipt of `pollID`.
    public func isValidReceipt(_ receipt: String?, pollID: String) -> Bool {
        guard let receipt else { return false }
        return self.verify(receipt, of: "receipt:\(pollID)")
    }

    /// Whether a reader showing `receipt` may see `poll`'s results at `now` (its visibility; the
    /// receipt matters only to an `after_vote` poll): results and timelines ask the same.
    func showsResults(of poll: Poll, receipt: String?, at now: Date) -> Bool {
        let hasVoted = poll.settings.visibility == .afterVote && self.isValidReceipt(receipt, pollID: poll.id)
        return poll.showsResults(at: now, hasVoted: hasVoted)
    }
}

/// API keys: `pw_` and 32 random base-62 characters, stored as their SHA-256 hex digest.
public enum APIKeys {
    public static func generate() -> String { "pw_" + Identifier.random(length: 32) }

    public static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

extension Data {
    func base64URLEncoded() -> String {
        self.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        self.init(base64Encoded: base64)
    }
}
