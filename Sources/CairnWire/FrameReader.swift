import CairnIO
import Glibc

/// Reads frames from one connection through a pooled receive buffer: headers and small payloads
/// are parsed from it; big payloads go from the socket straight into their destination.
/// Loop-confined: used by the one task that reads the connection; it crosses tasks only as a
/// handle (that is why it may be `@unchecked Sendable`), and every use is on the socket's loop.
/// Its reads run on the caller's executor (`nonisolated(nonsending)`): a replica session is an
/// actor, and a plain nonisolated async call would hop off it to the loop's task executor and
/// back, two enqueues per call, four per replicated write.
public final class FrameReader: @unchecked Sendable {
    public let socket: TCPConnection
    private var rx: IOBuffer
    private var start = 0
    private var end = 0
    private var released = false

    public init(socket: TCPConnection) {
        socket.loop.assertInLoop()
        self.socket = socket
        rx = socket.loop.buffers.take(65_536)
    }

    /// Returns the receive buffer to the pool; call once, on the loop, when done reading.
    public func release() {
        guard !released else { return }
        released = true
        socket.loop.buffers.give(rx)
    }

    nonisolated(nonsending)
    private func ensure(_ n: Int) async throws(WireError) {
        while end - start < n {
            if start == end {
                start = 0; end = 0
            } else if rx.count - start < n {
                memmove(rx.base, rx.base + start, end - start)
                end -= start; start = 0
            }
            let got: Int
            do { got = try await socket.read(into: rx.base + end, count: rx.count - end) } catch { throw .closed }
            if got == 0 { throw .closed }
            end += got
        }
    }

    /// The next frame's header, checked (magic, version, CRC, opcode, payload bound).
    nonisolated(nonsending)
    public func readHeader() async throws(WireError) -> WireHeader {
        try await ensure(WireHeader.size)
        let h = try WireHeader.decode(rx.base + start)
        start += WireHeader.size
        return h
    }

    /// Reads the `n`-byte payload into `dst` and checks it against `crc`.
    nonisolated(nonsending)
    public func readPayload(into dst: UnsafeMutableRawPointer, _ n: Int, crc: UInt32) async throws(WireError) {
        var done = min(end - start, n)
        if done > 0 {
            dst.copyMemory(from: rx.base + start, byteCount: done)
            start += done
        }
        if n - done >= 16_384 {
            do { try await socket.readExactly(into: dst + done, count: n - done) } catch { throw .closed }
            done = n
        }
        while done < n {
            try await ensure(1)
            let c = min(end - start, n - done)
            (dst + done).copyMemory(from: rx.base + start, byteCount: c)
            start += c
            done += c
        }
        guard wireChecksum(dst, n) == crc else { throw .payloadChecksum }
    }

    /// Reads a small control payload (JSON) as bytes, checked.
    nonisolated(nonsending)
    public func readControl(_ header: WireHeader) async throws(WireError) -> [UInt8] {
        let n = Int(header.payloadLength)
        guard n > 0 else { return [] }
        let buf = socket.loop.buffers.take(n)
        defer { socket.loop.buffers.give(buf) }
        try await readPayload(into: buf.base, n, crc: header.payloadCRC)
        return Array(UnsafeRawBufferPointer(start: buf.base, count: n))
    }

    /// Discards an `n`-byte payload.
    nonisolated(nonsending)
    public func skip(_ n: Int) async throws(WireError) {
        var left = n
        while left > 0 {
            try await ensure(1)
            let c = min(end - start, left)
            start += c
            left -= c
        }
    }
}
