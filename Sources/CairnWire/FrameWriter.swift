import CairnIO
import DequeModule
import Glibc

/// One frame waiting to go out. Control payloads (`small`) are copied into the staging buffer;
/// data payloads (`buffer`) are sent in place with writev.
public struct OutFrame {
    public var header: WireHeader
    public var small: [UInt8]
    public var buffer: IOBuffer?
    /// Give `buffer` back to the pool once it is on the wire.
    public var releaseBuffer: Bool

    /// A frame with no payload.
    public init(_ header: WireHeader) {
        self.header = header
        self.small = []
        self.buffer = nil
        self.releaseBuffer = false
    }

    /// A frame with a control payload; sets length and CRC.
    public init(_ header: WireHeader, control: [UInt8]) {
        var h = header
        h.payloadLength = UInt32(control.count)
        h.payloadCRC = control.withUnsafeBytes { wireChecksum($0.baseAddress, $0.count) }
        self.header = h
        self.small = control
        self.buffer = nil
        self.releaseBuffer = false
    }

    /// A frame with a data payload whose CRC the caller computed (once for all replicas).
    public init(_ header: WireHeader, data: IOBuffer, crc: UInt32, release: Bool) {
        var h = header
        h.payloadLength = UInt32(data.count)
        h.payloadCRC = crc
        self.header = h
        self.small = []
        self.buffer = data
        self.releaseBuffer = release
    }
}

/// Sends the frames of one connection. `enqueue` never waits: it queues and wakes the writer task
/// (`run`), which sends everything queued in one writev per batch, so the frames of every I/O
/// started in one loop turn share a system call, and a stalled peer holds up no caller.
/// Loop-confined: `enqueue`, `run` and `close` run on the socket's loop (asserted); it crosses
/// tasks only as a handle, which is why it may be `@unchecked Sendable`.
public final class FrameWriter: @unchecked Sendable {
    public let socket: TCPConnection
    private let pool: BufferPool
    private var queue = Deque<OutFrame>()
    private var waiter: UnsafeContinuation<Void, Never>?
    private var staging: IOBuffer
    private let stagingSize = 65_536
    private var iov: UnsafeMutableBufferPointer<iovec>
    private let maxIOV = 256
    private var releases: [IOBuffer] = []
    public private(set) var failed = false
    private var closed = false
    /// Set by `finish`: stop once the queue is empty.
    private var finishing = false
    private let coalesce: Bool

    public init(socket: TCPConnection, coalesce: Bool = false) {
        socket.loop.assertInLoop()
        self.coalesce = coalesce
        self.socket = socket
        self.pool = socket.loop.buffers
        staging = pool.take(stagingSize)
        iov = .allocate(capacity: maxIOV)
    }

    public var pending: Int { queue.count }

    public func enqueue(_ f: OutFrame) {
        socket.loop.assertInLoop()
        if failed || closed {
            if f.releaseBuffer, let b = f.buffer { pool.give(b) }
            return
        }
        var f = f
        if f.small.count > 4096 {
            // Big control payloads (extent lists) move to a pooled buffer so staging stays small.
            let b = pool.take(f.small.count)
            f.small.withUnsafeBytes { b.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            f.small = []
            f.buffer = b
            f.releaseBuffer = true
        }
        queue.append(f)
        wake()
    }

    /// The writer task: runs until `close`, or `finish` and an empty queue. After a socket
    /// error it drops what is queued.
    public func run() async {
        while !closed {
            if queue.isEmpty {
                if finishing { break }
                await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                    if !queue.isEmpty || closed || finishing { c.resume() } else { waiter = c }
                }
                continue
            }
            if failed { dropQueued(); continue }
            // Gather after the turn's other tasks have queued their frames too.
            if coalesce { await socket.loop.afterJobs() }
            var used = 0
            var n = 0
            while let f = queue.first, n + 2 <= maxIOV {
                let smallBytes = f.small.count
                guard used + WireHeader.size + smallBytes <= stagingSize else { break }
                queue.removeFirst()
                let start = staging.base + used
                f.header.encode(into: start)
                used += WireHeader.size
                if smallBytes > 0 {
                    f.small.withUnsafeBytes { (staging.base + used).copyMemory(from: $0.baseAddress!, byteCount: smallBytes) }
                    used += smallBytes
                }
                if n > 0, let prev = iov[n - 1].iov_base, prev + iov[n - 1].iov_len == start {
                    iov[n - 1].iov_len += staging.base + used - start
                } else {
                    iov[n] = iovec(iov_base: start, iov_len: staging.base + used - start)
                    n += 1
                }
                if let b = f.buffer, b.count > 0 {
                    iov[n] = iovec(iov_base: b.base, iov_len: b.count)
                    n += 1
                }
                if f.releaseBuffer, let b = f.buffer { releases.append(b) }
            }
            if n == 0 { continue }
            do {
                try await socket.write(UnsafeMutableBufferPointer(rebasing: iov[0..<n]))
            } catch {
                failed = true
            }
            for r in releases { pool.give(r) }
            releases.removeAll(keepingCapacity: true)
        }
        dropQueued()
        pool.give(staging)
        iov.deallocate()
    }

    private func dropQueued() {
        for f in queue where f.releaseBuffer { if let b = f.buffer { pool.give(b) } }
        queue.removeAll()
    }

    /// Stops the writer task (after its current batch); queued frames are dropped.
    public func close() {
        closed = true
        wake()
    }

    /// Stops the writer task once everything queued so far is written (or the socket failed):
    /// the last frames, a refused handshake's status say, still reach the peer.
    public func finish() {
        finishing = true
        wake()
    }

    private func wake() {
        if let w = waiter {
            waiter = nil
            w.resume()
        }
    }
}
