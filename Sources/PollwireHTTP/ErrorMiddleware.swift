import Hummingbird
import Logging

/// Turns every error into the one JSON error shape, so metrics and clients see the real status.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = APIError.from(error)
            if apiError.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            }
            return apiError.response(allocator: ByteBufferAllocator())
        }
    }
}
