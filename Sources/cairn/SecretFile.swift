import ArgumentParser
import Glibc
import Logging

/// A secret read from a file rather than the command line, where every user sees it in `ps`.
/// The file holds the secret alone; one trailing newline (`\n` or `\r\n`) is not part of it.
enum SecretFile {
    static let maxBytes = 4096

    /// The secret's bytes; throws a `ValidationError` naming `option` for a missing, unreadable,
    /// empty or oversized file. Warns when the file is readable by group or others.
    static func read(_ path: String, option: String, logger: Logger) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("\(option) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & 0o077 != 0 {
            logger.warning("\(option) \(path) is readable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ValidationError("\(option) \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= maxBytes else { throw ValidationError("\(option) \(path): longer than \(maxBytes) bytes") }
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw ValidationError("\(option) \(path) is empty") }
        return bytes
    }

    /// The same, as text (CHAP secrets).
    static func readString(_ path: String, option: String, logger: Logger) throws -> String {
        String(decoding: try read(path, option: option, logger: logger), as: UTF8.self)
    }
}
