@testable import CairnReplica
import CairnIO
import CairnWire
import Foundation
import Glibc
import Logging
import Testing

/// Snapshots in one replica's store: layers that read right through writes, partial-granule
/// writes, unmaps, reverts, deletes (merges), reopening, and the space a delete frees.
@Suite struct SnapshotStoreTests {
    static let kib: UInt64 = 1024
    static let mib: UInt64 = 1 << 20

    /// Writes `length` bytes of `byte` at `offset`, as a controller's write would arrive.
    static func fill(_ store: ReplicaStore, _ loop: EventLoop, _ offset: UInt64, _ length: UInt64, _ byte: UInt8) async throws {
        let b = loop.buffers.take(Int(length))
        defer { loop.buffers.give(b) }
        memset(b.base, Int32(byte), Int(length))
        try await store.admit(offset: offset, length: length, epoch: 1, rebuild: false)
        try await store.write(offset: offset, from: b, fua: false, rebuild: false)
    }

    /// The bytes the volume reads at [offset, +length), run-length summarised: [(byte, count)].
    static func runs(_ store: ReplicaStore, _ loop: EventLoop, _ offset: UInt64, _ length: UInt64,
                     layer: UInt32 = LayerSelector.view) async throws -> [String] {
        let b = loop.buffers.take(Int(length))
        defer { loop.buffers.give(b) }
        try await store.read(offset: offset, length: Int(length), into: b, layer: layer)
        var out: [String] = []
        var last: UInt8?
        var n = 0
        for i in 0..<Int(length) {
            let v = b.base.load(fromByteOffset: i, as: UInt8.self)
            if v == last { n += 1; continue }
            if let l = last { out.append("\(l)x\(n)") }
            last = v
            n = 1
        }
        if let l = last { out.append("\(l)x\(n)") }
        return out
    }

    static func snap(_ store: ReplicaStore, _ name: String) async throws {
        try await store.createSnapshot(SnapshotCreate(id: "id-" + name, name: name, createdAt: 0), epoch: 1)
    }

    @Test func layersReadRightThroughWritesRevertsAndDeletes() async throws {
        let f = try ReplicaFixture("snap")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        let k = Self.kib
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: 16 * Self.mib, loop: loop, logger: logger)
            try await Self.fill(store, loop, 0, 64 * k, 0xA)         // A over [0, 64K)
            try await Self.snap(store, "s1")
            try await Self.fill(store, loop, 16 * k, 16 * k, 0xB)    // B over [16K, 32K)
            try await Self.fill(store, loop, 40 * k + 512, 512, 0xB) // and one sector inside a granule of A
            try await Self.snap(store, "s2")
            try await Self.fill(store, loop, 24 * k, 4 * k, 0xC)     // C over [24K, 28K)
            try await store.admit(offset: 48 * k, length: 8 * k, epoch: 1, rebuild: false)
            try await store.unmap(offset: 48 * k, length: 8 * k)     // zeros over part of A

            let now = ["10x16384", "11x8192", "12x4096", "11x4096", "10x8704", "11x512", "10x7168", "0x8192", "10x8192", "0x65536"]
            #expect(try await Self.runs(store, loop, 0, 128 * k) == now)
            // Each layer alone: s1 holds A; s2 holds B and the granule copied up; the head C and zeros.
            #expect(try await Self.runs(store, loop, 0, 64 * k, layer: 1) == ["10x65536"])
            #expect(try await Self.runs(store, loop, 36 * k, 8 * k, layer: 2) == ["0x4096", "10x512", "11x512", "10x3072"])

            // Reopened: the index comes back from the files' allocation.
            await store.close()
            let again = try ReplicaStore(directory: dir, size: nil, loop: loop, logger: logger)
            #expect(try await Self.runs(again, loop, 0, 128 * k) == now)
            #expect(await again.snapshotList().snapshots.map(\.name) == ["s1", "s2"])

            try await again.revert(SnapshotRef(id: "id-s1"), epoch: 1)
            #expect(try await Self.runs(again, loop, 0, 128 * k) == ["10x65536", "0x65536"])
            try await again.revert(SnapshotRef(id: "id-s2"), epoch: 1)
            let atS2 = ["10x16384", "11x16384", "10x8704", "11x512", "10x23552", "0x65536"]
            #expect(try await Self.runs(again, loop, 0, 128 * k) == atS2)
            // A write after the revert, then s1 deleted: merged into s2, which reads the same.
            try await Self.fill(again, loop, 60 * k, 8 * k, 0xD)
            try await again.deleteSnapshot(SnapshotRef(id: "id-s1", bytesPerSecond: 1 << 30), epoch: 1)
            while await again.snapshotList().snapshots.count > 1 { try await Task.sleep(nanoseconds: 10_000_000) }
            #expect(try await Self.runs(again, loop, 0, 128 * k)
                    == ["10x16384", "11x16384", "10x8704", "11x512", "10x19456", "13x8192", "0x61440"])
            try await again.revert(SnapshotRef(id: "id-s2"), epoch: 1)
            #expect(try await Self.runs(again, loop, 0, 128 * k) == atS2)
            // The last one deleted: merged into the head, which then reads through no layer.
            try await again.deleteSnapshot(SnapshotRef(id: "id-s2", bytesPerSecond: 1 << 30), epoch: 1)
            while await !again.snapshotList().snapshots.isEmpty { try await Task.sleep(nanoseconds: 10_000_000) }
            #expect(try await Self.runs(again, loop, 0, 128 * k) == atS2)
            await again.close()
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".img") }
        #expect(files.count == 1, "\(files)")
    }

    @Test func manySnapshotsDeletedGiveTheSpaceBack() async throws {
        let f = try ReplicaFixture("snapmany")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        let n = 120
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: 64 * Self.mib, loop: loop, logger: logger)
            // Each snapshot holds one 64 KiB write; every tenth overwrites the first.
            for i in 0..<n {
                let at = i % 10 == 0 ? 0 : UInt64(i) * 64 * Self.kib
                try await Self.fill(store, loop, at, 64 * Self.kib, UInt8(i % 250 + 1))
                try await Self.snap(store, "s\(i)")
            }
            let before = try await Self.runs(store, loop, 0, 8 * Self.mib)
            for i in 0..<n where i != 57 {
                try await store.deleteSnapshot(SnapshotRef(id: "id-s\(i)", bytesPerSecond: 1 << 30), epoch: 1)
            }
            while await store.snapshotList().snapshots.count > 1 { try await Task.sleep(nanoseconds: 10_000_000) }
            #expect(try await Self.runs(store, loop, 0, 8 * Self.mib) == before)
            #expect(await store.snapshotList().snapshots.map(\.name) == ["s57"])
            await store.close()
        }
        var st = stat()
        var used: UInt64 = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) where name.hasSuffix(".img") {
            if stat(dir + "/" + name, &st) == 0 { used += UInt64(st.st_blocks) * 512 }
        }
        // Everything written, once: 111 distinct 64 KiB regions (the rest overwrote region 0).
        let oneCopy = UInt64(n - n / 10 + 1) * 64 * Self.kib
        #expect(used <= oneCopy * 2 + Self.mib, "\(used) bytes on disk for \(oneCopy) bytes of data")
    }
}
