import CCairn
import Glibc

/// File operations through the loop's io_uring. Each awaits one completion; submissions are
/// batched: an SQE queued here goes to the kernel with the rest of this loop turn's.
///
/// With `inline`, the loop makes the syscall itself instead, for files in memory (see
/// `isMemoryBacked`): io_uring cannot issue their I/O without blocking, so it hands every one
/// to an io-wq kernel thread, and a 4 KiB copy then costs two context switches (about 15 us each
/// on the 2-CPU VM this was measured on, against 1 us for the copy).
extension EventLoop {
    /// True for a file on tmpfs or ramfs: its I/O is a memory copy that never waits for a device.
    /// (A tmpfs page swapped out would make a read wait for swap; Kubernetes nodes run without
    /// swap by default, and that wait is the same one an io-wq thread would sit through.)
    public static func isMemoryBacked(fd: Int32) -> Bool { ccairn_memory_backed(fd) == 1 }

    /// The same operation as `submit`, done now with a syscall: the result as a CQE would carry it.
    func performNow(_ op: FileOp, fd: Int32, buffer: UnsafeMutableRawPointer?, length: Int, offset: UInt64) -> Int32 {
        while true {
            let rc: Int
            switch op {
            case .read: rc = pread(fd, buffer, length, off_t(offset))
            case .write: rc = pwrite(fd, buffer, length, off_t(offset))
            case .writeDurable: rc = ccairn_pwrite_dsync(fd, buffer, length, off_t(offset))
            case .fsync: rc = Int(Glibc.fsync(fd))
            case .fdatasync: rc = Int(Glibc.fdatasync(fd))
            case .punchHole: rc = Int(ccairn_punch_hole(fd, off_t(offset), off_t(length)))
            case .nop: rc = 0
            }
            if rc >= 0 { return Int32(truncatingIfNeeded: rc) }
            if errno != EINTR { return -errno }
        }
    }

    /// Counts operations handed to io_uring (a test holds memory-backed files to none).
    public var fileOpsQueued: UInt64 { fileOpsQueuedCount }

    public enum FileOp: Sendable {
        /// `writeDurable` is a write with RWF_DSYNC: durable on completion, one op instead of two.
        case read, write, writeDurable, fsync, fdatasync, punchHole, nop
    }

    /// Queues one SQE and suspends until its completion. Returns the CQE result (>= 0, or -errno).
    nonisolated(nonsending)
    public func submit(_ op: FileOp, fd: Int32, buffer: UnsafeMutableRawPointer?, length: Int, offset: UInt64) async -> Int32 {
        let buf = IOBuffer(base: buffer ?? UnsafeMutableRawPointer(bitPattern: 1)!, count: length)
        return await withUnsafeContinuation { (c: UnsafeContinuation<Int32, Never>) in
            if inLoop {
                queue(op, fd: fd, buffer: buf, length: length, offset: offset, c)
            } else {
                execute { self.queue(op, fd: fd, buffer: buf, length: length, offset: offset, c) }
            }
        }
    }

    private func queue(_ op: FileOp, fd: Int32, buffer: IOBuffer, length: Int, offset: UInt64,
                       _ c: UnsafeContinuation<Int32, Never>) {
        var sqe = io_uring_get_sqe(&ring)
        if sqe == nil {
            flushSubmissions()
            sqe = io_uring_get_sqe(&ring)
        }
        guard let sqe else {
            c.resume(returning: -EBUSY)
            return
        }
        let slot: Int
        if let s = ioFree.popLast() {
            slot = s
            ioSlots[s] = c
        } else {
            slot = ioSlots.count
            ioSlots.append(c)
        }
        switch op {
        case .read:
            io_uring_prep_read(sqe, fd, buffer.base, UInt32(length), offset)
        case .write:
            io_uring_prep_write(sqe, fd, buffer.base, UInt32(length), offset)
        case .writeDurable:
            io_uring_prep_write(sqe, fd, buffer.base, UInt32(length), offset)
            sqe.pointee.rw_flags = CCAIRN_RWF_DSYNC
        case .fsync:
            io_uring_prep_fsync(sqe, fd, 0)
        case .fdatasync:
            io_uring_prep_fsync(sqe, fd, UInt32(IORING_FSYNC_DATASYNC))
        case .punchHole:
            io_uring_prep_fallocate(sqe, fd, CCAIRN_FALLOC_FL_PUNCH_HOLE | CCAIRN_FALLOC_FL_KEEP_SIZE,
                                    off_t(offset), off_t(length))
        case .nop:
            io_uring_prep_nop(sqe)
        }
        io_uring_sqe_set_data64(sqe, UInt64(slot))
        fileOpsQueuedCount &+= 1
        sqesPending += 1
        ioInFlight += 1
    }

    /// One operation through io_uring, or now with a syscall when `inline`.
    nonisolated(nonsending)
    func run(_ op: FileOp, fd: Int32, buffer: UnsafeMutableRawPointer?, length: Int, offset: UInt64, inline: Bool) async -> Int32 {
        if inline { return performNow(op, fd: fd, buffer: buffer, length: length, offset: offset) }
        return await submit(op, fd: fd, buffer: buffer, length: length, offset: offset)
    }

    /// Reads exactly `length` bytes at `offset`, retrying short reads; a read past EOF fills zeros.
    nonisolated(nonsending)
    public func readFully(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, offset: UInt64,
                          inline: Bool = false) async throws(IOError) {
        var done = 0
        while done < length {
            let rc = await run(.read, fd: fd, buffer: buffer + done, length: length - done, offset: offset + UInt64(done), inline: inline)
            if rc < 0 {
                if rc == -EINTR || rc == -EAGAIN { continue }
                throw IOError.errno(-rc, "read")
            }
            if rc == 0 {
                (buffer + done).initializeMemory(as: UInt8.self, repeating: 0, count: length - done)
                return
            }
            done += Int(rc)
        }
    }

    /// Writes exactly `length` bytes at `offset`, retrying short writes. With `durable`, each
    /// write carries RWF_DSYNC, so the data is on stable storage when this returns.
    nonisolated(nonsending)
    public func writeFully(fd: Int32, from buffer: UnsafeMutableRawPointer, length: Int, offset: UInt64,
                           durable: Bool = false, inline: Bool = false) async throws(IOError) {
        var done = 0
        while done < length {
            let rc = await run(durable ? .writeDurable : .write, fd: fd, buffer: buffer + done, length: length - done,
                               offset: offset + UInt64(done), inline: inline)
            if rc < 0 {
                if rc == -EINTR || rc == -EAGAIN { continue }
                throw IOError.errno(-rc, "write")
            }
            if rc == 0 { throw IOError.errno(EIO, "write returned 0") }
            done += Int(rc)
        }
    }

    nonisolated(nonsending)
    public func fdatasync(fd: Int32, inline: Bool = false) async throws(IOError) {
        let rc = await run(.fdatasync, fd: fd, buffer: nil, length: 0, offset: 0, inline: inline)
        if rc < 0 { throw IOError.errno(-rc, "fdatasync") }
    }

    nonisolated(nonsending)
    public func punchHole(fd: Int32, offset: UInt64, length: Int, inline: Bool = false) async throws(IOError) {
        let rc = await run(.punchHole, fd: fd, buffer: nil, length: length, offset: offset, inline: inline)
        if rc < 0 { throw IOError.errno(-rc, "fallocate(punch hole)") }
    }

    nonisolated(nonsending)
    public func nop() async -> Int32 {
        await submit(.nop, fd: -1, buffer: nil, length: 0, offset: 0)
    }
}
