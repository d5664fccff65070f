import Hummingbird
import Logging
import NIOHTTP1

/// Turns every error into the one JSON error shape, so metrics and clients see the real status.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = PollwireRequestContext

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPParserError {
            // The connection is broken (a malformed or cut-off request): Hummingbird closes it.
            throw error
        } catch {
            let apiError = APIError.from(error)
            if apiError.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            }
            return apiError.response(allocator: ByteBufferAllocator())
        }
    }
}
