import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A new random secret in a file of its own: the API token, each volume's replica-link secret.
enum RandomSecret {
    /// Writes 32 random bytes as hex (and a newline, which every reader drops) to `path`, mode
    /// 0600, atomically (DESIGN.md invariant 8): a temporary file, fsync, rename, fsync of the
    /// directory.
    static func create(at path: String) throws {
        var rng = SystemRandomNumberGenerator()
        let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined() + "\n"
        try writeAtomically(hex, to: path)
    }

    /// Copies the secret at `source` to `path`, the same way (a clone keeps its source's).
    static func copy(from source: String, to path: String) throws {
        guard let text = try? String(contentsOfFile: source, encoding: .utf8) else {
            throw ControlError.io("cannot read \(source)")
        }
        try writeAtomically(text, to: path)
    }

    static func writeAtomically(_ hex: String, to path: String) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ControlError.io("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let written = hex.withCString { write(fd, $0, strlen($0)) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == hex.utf8.count, synced else { throw ControlError.io("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        guard rename(tmp, path) == 0 else { throw ControlError.io("cannot rename \(tmp): \(String(cString: strerror(errno)))") }
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

/// Seconds on the monotonic clock: deadlines and backoffs of the reconciler and orchestrator.
enum Monotonic {
    static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
