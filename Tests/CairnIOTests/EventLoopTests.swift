@testable import CairnIO
import CCairn
import Glibc
import Testing

/// An actor pinned to the loop, the way the data path's actors are.
actor PinnedProbe {
    let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    init(loop: EventLoop) { self.loop = loop }

    func nopsStayOnLoop(_ n: Int) async -> (ok: Bool, results: [Int32]) {
        var ok = loop.inLoop
        var results: [Int32] = []
        for _ in 0..<n {
            results.append(await loop.nop())
            ok = ok && loop.inLoop
        }
        return (ok, results)
    }

    func writeThenRead(path: String) async throws -> Bool {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | CCAIRN_O_DIRECT, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let out = loop.buffers.take(8192)
        let back = loop.buffers.take(8192)
        defer { loop.buffers.give(out); loop.buffers.give(back) }
        for i in 0..<8192 { out.base.storeBytes(of: UInt8(truncatingIfNeeded: i * 7), toByteOffset: i, as: UInt8.self) }
        try await loop.writeFully(fd: fd, from: out.base, length: 8192, offset: 4096)
        try await loop.fdatasync(fd: fd)
        try await loop.readFully(fd: fd, into: back.base, length: 8192, offset: 4096)
        return memcmp(out.base, back.base, 8192) == 0 && loop.inLoop
    }

    func echo(payload: [UInt8]) async throws -> [UInt8] {
        let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0)
        defer { listener.close() }
        let port = listener.port
        let loop = self.loop
        let server = Task(executorPreference: loop.taskExecutor) {
            let c = try await listener.accept()
            let buf = loop.buffers.take(65536)
            defer { loop.buffers.give(buf) }
            while true {
                let n = try await c.read(into: buf.base, count: buf.count)
                if n == 0 { break }
                try await c.write(from: buf.base, count: n)
            }
            c.close()
        }
        let client = try tcpConnect(loop: loop, host: "127.0.0.1", port: port)
        let out = loop.buffers.take(payload.count)
        let back = loop.buffers.take(payload.count)
        defer { loop.buffers.give(out); loop.buffers.give(back) }
        payload.withUnsafeBytes { out.bytes.copyMemory(from: $0) }
        // A child task does not inherit the actor's executor: pin the sender to the loop explicitly.
        let sender = Task(executorPreference: loop.taskExecutor) { try await client.write(from: out.base, count: out.count) }
        try await client.readExactly(into: back.base, count: back.count)
        try await sender.value
        client.close()
        try await server.value
        return Array(back.bytes)
    }
}

@Suite struct EventLoopTests {
    @Test func pinnedActorRunsOnLoopAcrossIOAwaits() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let probe = PinnedProbe(loop: loop)
        let (ok, results) = await probe.nopsStayOnLoop(100)
        #expect(ok)
        #expect(results.allSatisfy { $0 == 0 })
    }

    @Test func nopFromOffLoopTaskIsPostedThroughInbox() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        #expect(!loop.inLoop)
        let rc = await loop.nop()
        #expect(rc == 0)
    }

    @Test func directFileWriteReadsBackThroughIoUring() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let path = "/tmp/cairn-io-test-\(getpid()).img"
        defer { unlink(path) }
        #expect(try await PinnedProbe(loop: loop).writeThenRead(path: path))
    }

    @Test func tcpEchoThroughEpoll() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let back = try await PinnedProbe(loop: loop).echo(payload: payload)
        #expect(back == payload)
    }

    @Test func sleepWaitsAtLeastItsDurationAndTimersFireInOrder() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let t0 = monotonicNanos()
        await loop.sleep(nanoseconds: 20_000_000)
        #expect(monotonicNanos() - t0 >= 20_000_000)
        let order = try await loop.run {
            await withTaskGroup(of: Int.self) { group in
                for (i, ms) in [30, 10, 20].enumerated() {
                    group.addTask(executorPreference: loop.taskExecutor) {
                        await loop.sleep(nanoseconds: UInt64(ms) * 1_000_000)
                        return i
                    }
                }
                var got: [Int] = []
                for await i in group { got.append(i) }
                return got
            }
        }
        #expect(order == [1, 2, 0])
    }

    @Test func bufferPoolRecyclesAlignedBuffers() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let same = try await loop.run {
            let a = loop.buffers.take(4096)
            let aligned = Int(bitPattern: a.base) % BufferPool.alignment == 0
            loop.buffers.give(a)
            let b = loop.buffers.take(3000)
            loop.buffers.give(b)
            return aligned && a.base == b.base
        }
        #expect(same)
    }
}
