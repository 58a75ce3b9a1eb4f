import Glibc

/// Replaces a small file so that a crash at any moment leaves either the old or the new content
/// (invariant 8): write a temp file, fsync it, rename it over the old one, fsync the directory.
/// Metadata changes are rare (membership changes), so these blocking calls run inline.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String, directory: String) throws(ReplicaError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("open \(tmp): \(errnoText())") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errnoText()
                close(fd)
                throw errno == ENOSPC ? .noSpace : .io("write \(tmp): \(e)")
            }
            done += n
        }
        guard fsync(fd) == 0 else {
            let e = errnoText()
            close(fd)
            throw .io("fsync \(tmp): \(e)")
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw .io("rename \(tmp): \(errnoText())") }
        try syncDirectory(directory)
    }

    static func syncDirectory(_ directory: String) throws(ReplicaError) {
        let d = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw .io("open \(directory): \(errnoText())") }
        defer { close(d) }
        guard fsync(d) == 0 else { throw .io("fsync \(directory): \(errnoText())") }
    }

    /// The whole file, or nil if it does not exist.
    static func read(_ path: String) throws(ReplicaError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .io("open \(path): \(errnoText())")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io("read \(path): \(errnoText())")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }
}

func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

/// Why a replica refused something.
public enum ReplicaError: Error, Equatable, CustomStringConvertible {
    case io(String)
    case noSpace
    case config(String)
    case wrongVolume(String)

    public var description: String {
        switch self {
        case .io(let s): return s
        case .noSpace: return "no space left on device"
        case .config(let s): return s
        case .wrongVolume(let s): return s
        }
    }
}
