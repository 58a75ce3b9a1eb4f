@testable import CairnIO
import Glibc
import Testing

/// A connected pair of sockets on one loop, driven from an actor pinned to it.
actor SocketPair {
    let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    var client: TCPConnection!
    var server: TCPConnection!
    var buffer: IOBuffer!

    init(loop: EventLoop) { self.loop = loop }

    func connect() async throws {
        buffer = loop.buffers.take(4096)
        let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0)
        defer { listener.close() }
        client = try tcpConnect(loop: loop, host: "127.0.0.1", port: listener.port)
        server = try await listener.accept()
    }

    func send(_ bytes: [UInt8]) async throws {
        let out = loop.buffers.take(bytes.count)
        defer { loop.buffers.give(out) }
        bytes.withUnsafeBytes { out.bytes.copyMemory(from: $0) }
        try await client.write(from: out.base, count: bytes.count)
    }

    /// One read on the server side, bounded: if nothing comes within ten seconds the server
    /// socket is closed under the reader, which then throws instead of hanging the test. (Two
    /// seconds were too few in a full `swift test` run on 2 CPUs beside the disk-heavy suites.)
    func receive() async throws -> [UInt8] {
        let server = self.server!
        let watchdog = loop.spawn { [loop] in
            await loop.sleep(nanoseconds: 10_000_000_000)
            if !Task.isCancelled { server.close() }
        }
        defer { watchdog.cancel() }
        let n = try await server.read(into: buffer.base, count: buffer.count)
        return Array(UnsafeRawBufferPointer(start: buffer.base, count: n))
    }

    /// Lets the loop take its epoll events (with no reader waiting on the server socket).
    func letTheLoopPoll() async {
        await loop.sleep(nanoseconds: 2_000_000)
    }

    func serverReadCalls() -> Int { server.readCalls }

    func closeClient() { client.close() }

    func close() {
        client?.close()
        server?.close()
        if let buffer { loop.buffers.give(buffer) }
    }
}

/// Runs `body` with a connected pair whose server side has just taken `[1]` in a short read: the
/// state in which the next read waits for an event instead of asking the kernel.
func withDrainedPair(_ name: String, _ body: (EventLoop, SocketPair) async throws -> Void) async throws {
    try await withLoop(name) { loop in
        let pair = SocketPair(loop: loop)
        try await pair.connect()
        try await pair.send([1])
        #expect(try await pair.receive() == [1])
        try await body(loop, pair)
        await pair.close()
    }
}

@Suite struct DrainedReadTests {
    @Test func aShortReadMakesTheNextReadWaitWithoutAskingTheKernel() async throws {
        try await withDrainedPair("drained") { loop, pair in
            // The next read parks first; the bytes sent after it wake it: two read(2) calls in
            // all, where asking first would have made three (the second one EAGAIN).
            let reader = loop.spawn { try? await pair.receive() }
            await pair.letTheLoopPoll()
            try await pair.send([4, 5])
            #expect(await reader.value == [4, 5])
            #expect(await pair.serverReadCalls() == 2)
        }
    }

    @Test func bytesThatArriveWhileNobodyReadsAreNotMissed() async throws {
        try await withDrainedPair("unread") { _, pair in
            // The read event for these comes and goes while no reader waits.
            try await pair.send([2, 3])
            await pair.letTheLoopPoll()
            #expect(try await pair.receive() == [2, 3])
        }
    }

    @Test func aHangUpWhileNobodyReadsIsSeenAsEndOfStream() async throws {
        try await withDrainedPair("hangup") { _, pair in
            try await pair.send([2])
            await pair.closeClient()
            await pair.letTheLoopPoll()
            #expect(try await pair.receive() == [2])
            #expect(try await pair.receive() == [])
        }
    }
}
