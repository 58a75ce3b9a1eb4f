@testable import CairnReplica
import CairnIO
import CairnWire
import Foundation
import Glibc
import Logging
import Testing

/// A replica's write-intent map: every region a volume write reaches stays marked, on disk, until
/// the controller settles it. After a controller crash it is all that says where the replicas
/// may differ; a region it fails to mark is a region the resync skips.
@Suite struct WriteIntentTests {
    static let g = RegionBitmap.intentGranularity
    static let size: UInt64 = 64 << 20

    /// Admits and writes `length` bytes at `offset`, as a session does.
    static func write(_ store: ReplicaStore, _ loop: EventLoop, offset: UInt64, length: Int, rebuild: Bool = false) async throws {
        try await store.admit(offset: offset, length: UInt64(length), epoch: 1, rebuild: rebuild)
        let buf = loop.buffers.take(length)
        defer { loop.buffers.give(buf) }
        buf.zero()
        try await store.write(offset: offset, from: buf, fua: false, rebuild: rebuild)
    }

    @Test func writesMarkTheirRegionsOnDiskUntilSettledAndRebuildWritesDoNot() async throws {
        let f = try ReplicaFixture("intent")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        let marked = try await loop.run { () async throws -> [Extent] in
            let store = try ReplicaStore(directory: dir, size: Self.size, loop: loop, logger: logger)
            try await Self.write(store, loop, offset: Self.g - 4096, length: 8192)  // regions 0 and 1
            try await Self.write(store, loop, offset: 5 * Self.g, length: 4096)
            try await Self.write(store, loop, offset: 9 * Self.g, length: 4096, rebuild: true)  // a copy, not a volume write
            var settled = RegionBitmap(volumeSize: Self.size)
            settled.mark(offset: 0, length: 1)
            try await store.settle(settled)
            try await store.persistIntent()
            let bits = await store.intentBitmap
            await store.close()
            return bits.extents(volumeSize: Self.size)
        }
        #expect(marked == [Extent(offset: Self.g, length: Self.g), Extent(offset: 5 * Self.g, length: Self.g)])
        // What a restarted replica reports is what was on disk.
        let reopened = try await loop.run { () async throws -> RegionBitmap in
            let store = try ReplicaStore(directory: dir, size: nil, loop: loop, logger: logger)
            let bits = await store.intentBitmap
            await store.close()
            return bits
        }
        #expect(reopened.extents(volumeSize: Self.size) == marked)
    }

    @Test func aWipeClearsTheMapAndASettleOfAnotherShapeIsRefused() async throws {
        let f = try ReplicaFixture("intent")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: Self.size, loop: loop, logger: logger)
            try await Self.write(store, loop, offset: 0, length: 4096)
            #expect(await store.intentBitmap.count == 1)
            await #expect(throws: WireStatus.badRequest) {
                try await store.settle(RegionBitmap(volumeSize: Self.size * 2))
            }
            #expect(await store.intentBitmap.count == 1)
            try await store.wipe()
            #expect(await store.intentBitmap.isEmpty, "a wiped replica differs everywhere; its full copy covers it")
            await store.close()
        }
    }
}
