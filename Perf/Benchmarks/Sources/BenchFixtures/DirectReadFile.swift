import CairnIO
import CCairn
import Glibc

/// A 1 MiB temporary file opened O_DIRECT, its loop, and an aligned 4 KiB buffer. The file is
/// unlinked at once: it lives as long as the descriptor.
public struct DirectReadFile: Sendable {
    static let blocks = 256
    public let loop: BenchLoop
    let fd: Int32
    let buffer: IOBuffer

    public static func make() throws -> DirectReadFile {
        let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(dir)/cairn-bench-XXXXXX".utf8CString)
        let wfd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard wfd >= 0 else { throw IOError.errno(errno, "mkstemp in \(dir)") }
        defer { Glibc.close(wfd) }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(path) }
        let buffer = IOBuffer(base: .allocate(byteCount: 4096, alignment: 4096), count: 4096)
        do {
            // Block b is filled with the byte b, so a read can tell it got the right block.
            for b in 0..<blocks {
                memset(buffer.base, Int32(b & 0xff), 4096)
                guard pwrite(wfd, buffer.base, 4096, off_t(b * 4096)) == 4096 else { throw IOError.errno(errno, "pwrite") }
            }
            fsync(wfd)
            let fd = open(path, O_RDONLY | O_CLOEXEC | CCAIRN_O_DIRECT)
            guard fd >= 0 else { throw IOError.errno(errno, "open O_DIRECT in \(dir) (set TMPDIR to a disk file system)") }
            return DirectReadFile(loop: try BenchLoop(name: "bench-read"), fd: fd, buffer: buffer)
        } catch {
            buffer.base.deallocate()
            throw error
        }
    }

    public func close() {
        loop.stop()
        _ = Glibc.close(fd)
        buffer.base.deallocate()
    }

    /// Reads block `i` (modulo the file's 256) through the loop's io_uring, as a store does
    /// (`EventLoop.readFully`), and checks its first byte.
    public func read(_ i: Int) async throws {
        let block = i & (Self.blocks - 1)
        try await loop.loop.readFully(fd: fd, into: buffer.base, length: 4096, offset: UInt64(block * 4096))
        if buffer.base.load(as: UInt8.self) != UInt8(truncatingIfNeeded: block) {
            throw IOError.errno(EIO, "block \(block) read back wrong")
        }
    }
}
