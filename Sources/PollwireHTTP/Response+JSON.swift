import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PollwireCore

extension Response {
    /// A JSON response from a string built by hand (the hot paths) or a buffer.
    static func json(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
        Response.json(status, ByteBuffer(string: text), headers: headers)
    }

    static func json(_ status: HTTPResponse.Status, _ buffer: ByteBuffer, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: buffer))
    }

    /// A JSON response encoded with the wire format's coder (management paths).
    static func json(
        _ status: HTTPResponse.Status, encoding value: some Encodable, headers: HTTPFields = [:]
    ) throws
        -> Response
    {
        Response.json(status, ByteBuffer(data: try PollwireJSON.encoder().encode(value)), headers: headers)
    }
}

extension ByteBuffer {
    init(data: Data) {
        self = ByteBufferAllocator().buffer(capacity: data.count)
        self.writeBytes(data)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    static let pollwireDevice = HTTPField.Name("Pollwire-Device")!
    static let pollwireReceipt = HTTPField.Name("Pollwire-Receipt")!
    /// `true` on results served from memory while the node is cut off from its store.
    static let pollwireStale = HTTPField.Name("Pollwire-Stale")!
}
