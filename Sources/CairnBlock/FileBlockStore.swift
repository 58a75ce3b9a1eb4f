import CCairn
import CairnIO
import Glibc
import Logging

/// A LUN's blocks in one local sparse file, read and written with O_DIRECT through the loop's
/// io_uring. Where the filesystem refuses O_DIRECT (tmpfs before Linux 6.6), it falls back to
/// buffered I/O and says so; FUA and flush then rely on fdatasync, which is correct either way.
/// A file in memory (tmpfs, ramfs) is read and written by the loop itself, not through io_uring
/// (`EventLoop.isMemoryBacked`: io_uring would hand each of its I/Os to a kernel thread).
public final class FileBlockStore: BlockStore, @unchecked Sendable {
    // Immutable after init but for `blockCount`, which only `grow` changes, on the loop; the fd
    // is used only through the owning loop.
    public let blockSize: Int
    public private(set) var blockCount: UInt64
    public let supportsUnmap = true
    public let path: String
    public let direct: Bool
    /// The file is in memory: its I/O is done inline on the loop.
    public let inlineIO: Bool
    /// Opened O_RDONLY: writes, unmaps (and flushes, which have nothing to do) never reach the file.
    public let readOnly: Bool
    let fd: Int32
    let loop: EventLoop

    /// Opens (creating if needed) `path` as a volume of `size` bytes. An existing file of another
    /// non-zero size is refused rather than silently resized. `readOnly` opens it O_RDONLY: the
    /// file must then exist with exactly `size` bytes (nothing is created or sized), and writes
    /// and unmaps fail with `.readOnly` without touching it.
    public init(path: String, size: UInt64, blockSize: Int = 512, loop: EventLoop, logger: Logger,
                readOnly: Bool = false) throws(BlockStoreError) {
        precondition(blockSize == 512 || blockSize == 4096)
        guard size > 0, size % UInt64(blockSize) == 0 else {
            throw .unavailable("size \(size) is not a positive multiple of \(blockSize)")
        }
        self.path = path
        self.blockSize = blockSize
        self.blockCount = size / UInt64(blockSize)
        self.loop = loop
        self.readOnly = readOnly
        let mode = readOnly ? O_RDONLY : O_RDWR | O_CREAT
        var fd = open(path, mode | O_CLOEXEC | CCAIRN_O_DIRECT, 0o644)
        var direct = true
        if fd < 0 && errno == EINVAL {
            logger.warning("O_DIRECT not supported here; using buffered I/O with fdatasync", metadata: ["path": "\(path)"])
            fd = open(path, mode | O_CLOEXEC, 0o644)
            direct = false
        }
        guard fd >= 0 else { throw .unavailable("open \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        fstat(fd, &st)
        if readOnly && UInt64(st.st_size) != size {
            Glibc.close(fd)
            throw .unavailable("\(path) holds \(st.st_size) bytes, not the \(size) asked for (read-only: nothing is created or resized)")
        }
        if st.st_size != 0 && UInt64(st.st_size) != size {
            Glibc.close(fd)
            throw .unavailable("\(path) holds \(st.st_size) bytes, not the \(size) asked for")
        }
        if st.st_size == 0 && ftruncate(fd, off_t(size)) != 0 {
            let e = errno
            Glibc.close(fd)
            throw .unavailable("ftruncate \(path): \(String(cString: strerror(e)))")
        }
        self.fd = fd
        self.direct = direct
        self.inlineIO = EventLoop.isMemoryBacked(fd: fd)
    }

    nonisolated(nonsending)
    public func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        loop.assertInLoop()  // nonisolated(nonsending): callers on the loop must not hop away
        do {
            try await loop.readFully(fd: fd, into: buffer.base, length: count * blockSize, offset: lba * UInt64(blockSize),
                                    inline: inlineIO)
        } catch {
            throw .medium(read: true, error.description)
        }
    }

    nonisolated(nonsending)
    public func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError) {
        loop.assertInLoop()  // nonisolated(nonsending): callers on the loop must not hop away
        if readOnly { throw .readOnly }
        do {
            try await loop.writeFully(fd: fd, from: buffer.base, length: count * blockSize, offset: lba * UInt64(blockSize),
                                      durable: fua, inline: inlineIO)
        } catch {
            throw FileBlockStore.map(error, read: false)
        }
    }

    nonisolated(nonsending)
    public func flush() async throws(BlockStoreError) {
        if readOnly { return }
        do { try await loop.fdatasync(fd: fd, inline: inlineIO) } catch { throw FileBlockStore.map(error, read: false) }
    }

    nonisolated(nonsending)
    public func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError) {
        loop.assertInLoop()  // nonisolated(nonsending): callers on the loop must not hop away
        guard count > 0 else { return }
        if readOnly { throw .readOnly }
        do {
            try await loop.punchHole(fd: fd, offset: lba * UInt64(blockSize), length: Int(count) * blockSize, inline: inlineIO)
        } catch {
            throw FileBlockStore.map(error, read: false)
        }
    }

    nonisolated(nonsending)
    public func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64) {
        let bs = UInt64(blockSize)
        let end = blockCount * bs
        let off = lba * bs
        let data = lseek(fd, off_t(off), CCAIRN_SEEK_DATA)
        if data < 0 {
            // ENXIO: no data from here to the end of the file.
            return (false, blockCount - lba)
        }
        if UInt64(data) > off {
            let holeEnd = min(UInt64(data), end)
            return (false, max(1, (holeEnd - off) / bs))
        }
        let hole = lseek(fd, off_t(off), CCAIRN_SEEK_HOLE)
        let dataEnd = hole < 0 ? end : min(UInt64(hole), end)
        return (true, max(1, (dataEnd - off + bs - 1) / bs))
    }

    /// The allocated byte ranges of the file within [from, to), in order (SEEK_DATA/SEEK_HOLE;
    /// ranges are in filesystem blocks). Synchronous: a few system calls per range.
    public func allocatedRanges(from: UInt64, to: UInt64) -> [(offset: UInt64, length: UInt64)] {
        var out: [(offset: UInt64, length: UInt64)] = []
        let end = min(to, blockCount * UInt64(blockSize))
        var off = from
        while off < end {
            let data = lseek(fd, off_t(off), CCAIRN_SEEK_DATA)
            guard data >= 0, UInt64(data) < end else { break }
            let hole = lseek(fd, off_t(data), CCAIRN_SEEK_HOLE)
            let stop = hole < 0 ? end : min(UInt64(hole), end)
            if stop > UInt64(data) { out.append((UInt64(data), stop - UInt64(data))) }
            off = max(stop, UInt64(data) + 1)
        }
        return out
    }

    /// Makes the file `size` bytes (larger, a multiple of the block size) and the new size durable.
    /// The new blocks read as zeros (a hole).
    public func grow(to size: UInt64) throws(BlockStoreError) {
        loop.assertInLoop()
        precondition(size % UInt64(blockSize) == 0)
        guard size > blockCount * UInt64(blockSize) else { return }
        guard !readOnly else { throw .readOnly }
        guard ftruncate(fd, off_t(size)) == 0, fsync(fd) == 0 else {
            let e = errno
            throw e == ENOSPC || e == EDQUOT ? .noSpace : .medium(read: false, "grow \(path): \(String(cString: strerror(e)))")
        }
        blockCount = size / UInt64(blockSize)
    }

    /// Bytes the file occupies on disk (its allocated blocks), from one fstat.
    public var allocatedBytes: UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    nonisolated(nonsending)
    public func close() async {
        try? await flush()
        Glibc.close(fd)
    }

    static func map(_ error: IOError, read: Bool) -> BlockStoreError {
        if case .errno(let e, _) = error, e == ENOSPC || e == EDQUOT { return .noSpace }
        return .medium(read: read, error.description)
    }
}
