import CairnBlock
import CairnIO
import Foundation
import Glibc
import Logging
import Testing

/// Runs `body` as a task on a fresh loop, the way the SCSI layer calls the store.
func onLoop<T: Sendable>(_ body: @escaping @Sendable (EventLoop) async throws -> T) async throws -> T {
    let loop = try EventLoop()
    loop.start()
    defer { loop.stopAndJoin() }
    return try await loop.run { try await body(loop) }
}

func tempPath(_ tag: String, in dir: String = "/tmp") -> String {
    "\(dir)/cairn-block-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
}

/// Where the inline-I/O test puts its volume: the disk's /tmp and, where there is one, /dev/shm.
let scratchDirectories = ["/tmp"] + (access("/dev/shm", W_OK) == 0 ? ["/dev/shm"] : [])

/// The file system type as `stat -f` names it ("tmpfs", "ext2/ext3", ...): an oracle that does
/// not share the store's own check.
func fileSystemType(_ dir: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
    p.arguments = ["-f", "-c", "%T", dir]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    p.waitUntilExit()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite struct FileBlockStoreTests {
    let logger = Logger(label: "test")

    @Test func writeThenReadReturnsTheSameBlocks() async throws {
        let path = tempPath("rw")
        defer { unlink(path) }
        let logger = self.logger
        let ok = try await onLoop { loop in
            let store = try FileBlockStore(path: path, size: 1 << 20, loop: loop, logger: logger)
            let out = loop.buffers.take(8 * 512)
            let back = loop.buffers.take(8 * 512)
            defer { loop.buffers.give(out); loop.buffers.give(back) }
            for i in 0..<out.count { out.base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ 1), toByteOffset: i, as: UInt8.self) }
            try await store.write(lba: 100, count: 8, from: out, fua: true)
            try await store.read(lba: 100, count: 8, into: back)
            let same = memcmp(out.base, back.base, out.count) == 0
            await store.close()
            return same
        }
        #expect(ok)
    }

    @Test func freshVolumeIsSparseAndReadsZeros() async throws {
        let path = tempPath("sparse")
        defer { unlink(path) }
        let logger = self.logger
        let (mapped, count, zeros) = try await onLoop { loop in
            let store = try FileBlockStore(path: path, size: 64 << 20, loop: loop, logger: logger)
            let back = loop.buffers.take(4096)
            defer { loop.buffers.give(back) }
            try await store.read(lba: 5000, count: 8, into: back)
            let zeros = back.bytes.allSatisfy { $0 == 0 }
            let a = try await store.allocation(at: 0)
            await store.close()
            return (a.mapped, a.count, zeros)
        }
        #expect(!mapped)
        #expect(count == (64 << 20) / 512)
        #expect(zeros)
        var st = stat()
        stat(path, &st)
        #expect(st.st_blocks == 0)
    }

    @Test func unmapPunchesAHoleThatReadsZeros() async throws {
        let path = tempPath("unmap")
        defer { unlink(path) }
        let logger = self.logger
        let (before, after, zeros) = try await onLoop { loop in
            let store = try FileBlockStore(path: path, size: 4 << 20, loop: loop, logger: logger)
            let buf = loop.buffers.take(64 * 1024)
            defer { loop.buffers.give(buf) }
            memset(buf.base, 0xAB, buf.count)
            try await store.write(lba: 1024, count: 128, from: buf, fua: false)
            let before = try await store.allocation(at: 1024)
            try await store.unmap(lba: 1024, count: 128)
            let after = try await store.allocation(at: 1024)
            try await store.read(lba: 1024, count: 128, into: buf)
            let zeros = buf.bytes.allSatisfy { $0 == 0 }
            await store.close()
            return (before, after, zeros)
        }
        #expect(before.mapped && before.count >= 128)
        #expect(!after.mapped)
        #expect(zeros)
    }

    @Test(arguments: scratchDirectories)
    func aFileInMemoryIsDoneOnTheLoopAndAnyOtherThroughIoUring(dir: String) async throws {
        let path = tempPath("inline", in: dir)
        defer { unlink(path) }
        let logger = self.logger
        let fsType = try fileSystemType(dir)
        let memory = ["tmpfs", "ramfs"].contains(fsType)
        let (inline, queued, same, zeros) = try await onLoop { loop in
            let store = try FileBlockStore(path: path, size: 4 << 20, loop: loop, logger: logger)
            let before = loop.fileOpsQueued
            let out = loop.buffers.take(64 * 1024)
            let back = loop.buffers.take(64 * 1024)
            defer { loop.buffers.give(out); loop.buffers.give(back) }
            for i in 0..<out.count { out.base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 13 &+ 5), toByteOffset: i, as: UInt8.self) }
            try await store.write(lba: 256, count: 128, from: out, fua: true)
            try await store.write(lba: 512, count: 128, from: out, fua: false)
            try await store.flush()
            try await store.read(lba: 256, count: 128, into: back)
            let same = memcmp(out.base, back.base, out.count) == 0
            try await store.unmap(lba: 512, count: 128)
            try await store.read(lba: 512, count: 128, into: back)
            let zeros = back.bytes.allSatisfy { $0 == 0 }
            let queued = loop.fileOpsQueued - before
            await store.close()
            return (store.inlineIO, queued, same, zeros)
        }
        #expect(same)
        #expect(zeros)
        #expect(inline == memory, "\(dir) is \(fsType)")
        if memory {
            #expect(queued == 0, "\(queued) operations went through io_uring for a file in memory")
        } else {
            #expect(queued >= 6)
        }
    }

    @Test func reopeningWithAnotherSizeIsRefused() async throws {
        let path = tempPath("size")
        defer { unlink(path) }
        let logger = self.logger
        let refused = try await onLoop { loop -> Bool in
            let a = try FileBlockStore(path: path, size: 1 << 20, loop: loop, logger: logger)
            await a.close()
            do {
                _ = try FileBlockStore(path: path, size: 2 << 20, loop: loop, logger: logger)
                return false
            } catch {
                return true
            }
        }
        #expect(refused)
    }

    @Test func readOnlyOpensOnlyAnExistingFileOfTheRightSizeAndNeverWritesIt() async throws {
        let path = tempPath("ro")
        defer { unlink(path) }
        let logger = self.logger
        let (missing, wrongSize, readBack, writeError, unmapError, unchanged) = try await onLoop { loop in
            func refused(_ size: UInt64) -> Bool {
                let opened = try? FileBlockStore(path: path, size: size, loop: loop, logger: logger, readOnly: true)
                return opened == nil
            }
            let missing = refused(1 << 20) && access(path, F_OK) != 0   // not created either
            let rw = try FileBlockStore(path: path, size: 1 << 20, loop: loop, logger: logger)
            let buf = loop.buffers.take(4096)
            defer { loop.buffers.give(buf) }
            memset(buf.base, 0x5A, buf.count)
            try await rw.write(lba: 8, count: 8, from: buf, fua: true)
            await rw.close()
            let wrongSize = refused(2 << 20)
            let ro = try FileBlockStore(path: path, size: 1 << 20, loop: loop, logger: logger, readOnly: true)
            memset(buf.base, 0, buf.count)
            try await ro.read(lba: 8, count: 8, into: buf)
            let readBack = buf.bytes.allSatisfy { $0 == 0x5A }
            var writeError: BlockStoreError?
            do throws(BlockStoreError) { try await ro.write(lba: 8, count: 8, from: buf, fua: true) } catch { writeError = error }
            var unmapError: BlockStoreError?
            do throws(BlockStoreError) { try await ro.unmap(lba: 8, count: 8) } catch { unmapError = error }
            try await ro.flush()
            try await ro.read(lba: 8, count: 8, into: buf)
            let unchanged = buf.bytes.allSatisfy { $0 == 0x5A }
            await ro.close()
            return (missing, wrongSize, readBack, writeError, unmapError, unchanged)
        }
        #expect(missing)
        #expect(wrongSize)
        #expect(readBack && unchanged)
        #expect(writeError == .readOnly)
        #expect(unmapError == .readOnly)
    }
}
