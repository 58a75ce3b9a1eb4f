/// What went wrong with a backup target or a backup.
public enum BackupError: Error, Equatable, CustomStringConvertible {
    /// The target URL or its settings are wrong.
    case invalid(String)
    /// The target could not be reached, or refused (after the retries).
    case target(String)
    /// No such backup (or object).
    case notFound(String)
    /// Stored data does not match its hash, or cannot be read.
    case corrupt(String)
    case format(String)

    public var description: String {
        switch self {
        case .invalid(let s), .target(let s), .notFound(let s), .corrupt(let s), .format(let s): return s
        }
    }
}
