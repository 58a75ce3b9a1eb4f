import Foundation
import Glibc

/// An exclusive lock on a replica's directory (flock on DIR/lock), held for the process's life:
/// two replica processes on one directory would each believe they own its files, and their
/// writes and metadata would interleave. The kernel drops the lock when the process ends, kill -9
/// included, so a stale lock file never blocks a restart.
enum DirectoryLock {
    /// Takes the lock, or throws naming the reason (another process holds it).
    static func acquire(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LockError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let why = errno == EWOULDBLOCK ? "another process serves this directory" : String(cString: strerror(errno))
            close(fd)
            throw LockError("\(dir): \(why)")
        }
        // fd stays open (and locked) until the process exits.
    }

    struct LockError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}
