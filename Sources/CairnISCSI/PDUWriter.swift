import CairnIO
import DequeModule
import Glibc

/// One PDU waiting to be sent. `small` data is copied into the staging buffer; `buffer` data is
/// sent in place with writev. `release` goes back to the pool once the PDU is on the wire.
struct OutPDU {
    var bhs: BasicHeaderSegment
    var small: [UInt8] = []
    var buffer: IOBuffer?
    var release: IOBuffer?

    var dataLength: Int { buffer?.count ?? small.count }
}

/// Batches outgoing PDUs into writev calls: headers (and digests, padding, small payloads) go to
/// a staging buffer, big payloads are referenced where they lie. Owned by one connection actor.
final class PDUWriter {
    let connection: TCPConnection
    let pool: BufferPool
    var headerDigest = false
    var dataDigest = false
    private var queue = Deque<OutPDU>()
    private(set) var writing = false
    private var staging: IOBuffer
    private let stagingSize = 65_536
    private var iov: UnsafeMutableBufferPointer<iovec>
    private let maxIOV = 256
    private var releases: [IOBuffer] = []
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    var failed = false
    private(set) var closed = false

    init(connection: TCPConnection, pool: BufferPool) {
        self.connection = connection
        self.pool = pool
        staging = pool.take(stagingSize)
        iov = .allocate(capacity: maxIOV)
    }

    /// Returns buffers; called once the connection is done (on the loop). Later sends are dropped.
    func close() {
        guard !closed else { return }
        closed = true
        failed = true
        for p in queue { if let r = p.release { pool.give(r) } }
        queue.removeAll()
        pool.give(staging)
        iov.deallocate()
        let w = idleWaiters
        idleWaiters = []
        for c in w { c.resume() }
    }

    var isIdle: Bool { !writing && queue.isEmpty }

    func enqueue(_ p: OutPDU) {
        var p = p
        if p.buffer == nil && p.small.count > 4096 {
            // Large array payloads (NOP-In echo) move to a pooled buffer so staging stays small.
            let b = pool.take(p.small.count)
            p.small.withUnsafeBytes { b.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            p.buffer = b
            p.release = b
            p.small = []
        }
        if failed {
            if let r = p.release { pool.give(r) }
            return
        }
        queue.append(p)
    }

    /// Writes everything queued. If another flush is already writing, it will pick these up.
    nonisolated(nonsending) func flush() async {
        guard !writing, !closed else { return }
        writing = true
        while !queue.isEmpty && !failed {
            var used = 0
            var n = 0
            while let p = queue.first, n + 3 <= maxIOV {
                let len = p.dataLength
                let smallBytes = p.buffer == nil ? padded4(len) : 0
                guard used + 48 + 12 + smallBytes <= stagingSize else { break }
                queue.removeFirst()
                var h = p.bhs
                h.setDataSegmentLength(len)
                let start = staging.base + used
                h.write(to: start)
                used += 48
                if headerDigest {
                    ISCSIDigest.store(ISCSIDigest.crc(start, 48), to: staging.base + used)
                    used += 4
                }
                if let b = p.buffer, len > 0 {
                    iov[n] = iovec(iov_base: start, iov_len: staging.base + used - start)
                    n += 1
                    iov[n] = iovec(iov_base: b.base, iov_len: len)
                    n += 1
                    let tail = staging.base + used
                    let pad = padded4(len) - len
                    if pad > 0 { memset(tail, 0, pad); used += pad }
                    if dataDigest {
                        ISCSIDigest.store(ISCSIDigest.dataDigest(b.base, len), to: staging.base + used)
                        used += 4
                    }
                    if staging.base + used > tail {
                        iov[n] = iovec(iov_base: tail, iov_len: staging.base + used - tail)
                        n += 1
                    }
                } else {
                    if len > 0 {
                        let d = staging.base + used
                        p.small.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: len) }
                        let pad = padded4(len) - len
                        if pad > 0 { memset(d + len, 0, pad) }
                        used += padded4(len)
                        if dataDigest {
                            ISCSIDigest.store(ISCSIDigest.dataDigest(d, len), to: staging.base + used)
                            used += 4
                        }
                    }
                    // Merge with the previous staging iovec when contiguous.
                    if n > 0, let prev = iov[n - 1].iov_base, prev + iov[n - 1].iov_len == start {
                        iov[n - 1].iov_len += staging.base + used - start
                    } else {
                        iov[n] = iovec(iov_base: start, iov_len: staging.base + used - start)
                        n += 1
                    }
                }
                if let r = p.release { releases.append(r) }
            }
            if n == 0 { break }
            do {
                try await connection.write(UnsafeMutableBufferPointer(rebasing: iov[0..<n]))
            } catch {
                failed = true
            }
            for r in releases { pool.give(r) }
            releases.removeAll(keepingCapacity: true)
        }
        if failed {
            for p in queue { if let r = p.release { pool.give(r) } }
            queue.removeAll()
        }
        writing = false
        let w = idleWaiters
        idleWaiters = []
        for c in w { c.resume() }
    }

    /// Waits until everything queued so far is written (or the connection failed).
    nonisolated(nonsending) func drain() async {
        while !isIdle && !failed && !closed {
            if !writing {
                await flush()
            } else {
                // Re-checked inside: the write may have ended between the check and the await.
                await withCheckedContinuation { c in if !writing { c.resume() } else { idleWaiters.append(c) } }
            }
        }
    }
}
