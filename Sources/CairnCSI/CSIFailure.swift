import CairnClient
import GRPCCore

/// The gRPC statuses the CSI specification names for each failure, built in one place.
enum CSIFailure {
    static func invalid(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: message) }
    static func notFound(_ message: String) -> RPCError { RPCError(code: .notFound, message: message) }
    static func exists(_ message: String) -> RPCError { RPCError(code: .alreadyExists, message: message) }
    static func outOfRange(_ message: String) -> RPCError { RPCError(code: .outOfRange, message: message) }
    static func precondition(_ message: String) -> RPCError { RPCError(code: .failedPrecondition, message: message) }
    static func unavailable(_ message: String) -> RPCError { RPCError(code: .unavailable, message: message) }
    static func aborted(_ message: String) -> RPCError { RPCError(code: .aborted, message: message) }
    static func internalError(_ message: String) -> RPCError { RPCError(code: .internalError, message: message) }

    /// An apiserver answer as a CSI status: its problem's slug decides where the status code
    /// alone would be ambiguous (a 409 is "exists" for a create, "in use" for a delete).
    static func from(_ error: any Error, _ what: String) -> RPCError {
        if let e = error as? RPCError { return e }
        guard let client = error as? ClientError else { return internalError("\(what): \(error)") }
        switch client {
        case .unreachable(_, let why): return unavailable("\(what): the apiserver does not answer: \(why)")
        case .unexpected(let status, let body): return internalError("\(what): apiserver answered \(status): \(body.prefix(200))")
        case .undecodable(let why): return internalError("\(what): \(why)")
        case .problem(let p):
            let message = "\(what): \(p.detail)"
            switch slug(p) {
            case "not-found", "source-not-found": return notFound(message)
            case "volume-exists": return exists(message)
            case "insufficient-capacity", "not-enough-pools": return RPCError(code: .resourceExhausted, message: message)
            case "clone-in-progress", "volume-shrink": return precondition(message)
            case "volume-deleting", "conflict": return aborted(message)
            case "controller-unavailable", "target-unavailable": return unavailable(message)
            case "unauthorized": return RPCError(code: .unauthenticated, message: message)
            default:
                switch p.status {
                case 400, 422: return invalid(message)
                case 404: return notFound(message)
                case 409: return aborted(message)
                case 503: return unavailable(message)
                default: return internalError(message)
                }
            }
        }
    }

    /// Runs `body`; a failure that is not a CSI status already (a command that failed, a file
    /// that could not be written) becomes INTERNAL, prefixed with `what`.
    static func internalOnFailure<T: Sendable>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as RPCError { throw e } catch { throw internalError("\(what): \(error)") }
    }

    /// The problem type's last path part: "https://cairn.io/problems/volume-exists" -> "volume-exists".
    static func slug(_ p: Problem) -> String {
        p.type.split(separator: "/").last.map(String.init) ?? p.type
    }

    /// The slug of an apiserver problem, or nil for any other error.
    static func slug(of error: any Error) -> String? {
        if case .problem(let p)? = error as? ClientError { return slug(p) }
        return nil
    }
}
