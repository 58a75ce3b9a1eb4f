import CCairn
import Glibc

/// File operations through the loop's io_uring. Each awaits one completion; submissions are
/// batched: an SQE queued here goes to the kernel with the rest of this loop turn's.
extension EventLoop {
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
        sqesPending += 1
        ioInFlight += 1
    }

    /// Reads exactly `length` bytes at `offset`, retrying short reads; a read past EOF fills zeros.
    nonisolated(nonsending)
    public func readFully(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, offset: UInt64) async throws(IOError) {
        var done = 0
        while done < length {
            let rc = await submit(.read, fd: fd, buffer: buffer + done, length: length - done, offset: offset + UInt64(done))
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
                           durable: Bool = false) async throws(IOError) {
        var done = 0
        while done < length {
            let rc = await submit(durable ? .writeDurable : .write, fd: fd, buffer: buffer + done, length: length - done, offset: offset + UInt64(done))
            if rc < 0 {
                if rc == -EINTR || rc == -EAGAIN { continue }
                throw IOError.errno(-rc, "write")
            }
            if rc == 0 { throw IOError.errno(EIO, "write returned 0") }
            done += Int(rc)
        }
    }

    nonisolated(nonsending)
    public func fdatasync(fd: Int32) async throws(IOError) {
        let rc = await submit(.fdatasync, fd: fd, buffer: nil, length: 0, offset: 0)
        if rc < 0 { throw IOError.errno(-rc, "fdatasync") }
    }

    nonisolated(nonsending)
    public func punchHole(fd: Int32, offset: UInt64, length: Int) async throws(IOError) {
        let rc = await submit(.punchHole, fd: fd, buffer: nil, length: length, offset: offset)
        if rc < 0 { throw IOError.errno(-rc, "fallocate(punch hole)") }
    }

    nonisolated(nonsending)
    public func nop() async -> Int32 {
        await submit(.nop, fd: -1, buffer: nil, length: 0, offset: 0)
    }
}
