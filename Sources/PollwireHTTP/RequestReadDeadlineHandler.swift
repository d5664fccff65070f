import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request does not arrive whole within `timeout` of its head: a
/// client that trickles its body is cut off instead of holding a connection and a task.
///
/// Sits after HTTP decoding. A request that arrives whole in one read (nearly all of them)
/// costs one clock read and no timer; a timer is scheduled only when a read ends with a
/// request still incomplete. Must be used on the channel's event loop only (NIO handlers are).
final class RequestReadDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    /// When the head of the request still being read arrived.
    private var pendingSince: NIODeadline?
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            self.pendingSince = .now()
        case .end:
            self.pendingSince = nil
            self.cancelDeadline()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let since = self.pendingSince, self.deadline == nil {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.deadline = context.eventLoop.scheduleTask(deadline: since + self.timeout) {
                loopBound.value.close(promise: nil)
            }
        }
        context.fireChannelReadComplete()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelDeadline()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelDeadline()
        context.fireChannelInactive()
    }

    private func cancelDeadline() {
        self.deadline?.cancel()
        self.deadline = nil
    }
}
