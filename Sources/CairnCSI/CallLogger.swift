import GRPCCore
import Logging

/// Logs every call that fails, with the status it answers: a CO's bad request gets its CSI
/// status and a line in the log. Successful calls are logged at debug.
struct CallLogger: ServerInterceptor {
    let logger: Logger

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        do {
            let response = try await next(request, context)
            if case .failure(let e) = response.accepted { log(method, e) } else { logger.debug("\(method): ok") }
            return response
        } catch {
            log(method, error)
            throw error
        }
    }

    private func log(_ method: String, _ error: any Error) {
        if let e = error as? RPCError {
            let level: Logger.Level = e.code == .internalError || e.code == .unavailable ? .warning : .notice
            logger.log(level: level, "\(method): \(e.code): \(e.message)")
        } else {
            logger.warning("\(method): \(error)")
        }
    }
}
