@testable import CairnReplica
import CairnIO
import CairnWire
import Foundation
import Glibc
import Logging
import Testing

/// A replica grows (never shrinks): its data file, its maps and then its metadata, so that a
/// crash midway leaves the old size, and what it held before reads back.
@Suite struct ReplicaGrowTests {
    static let mib: UInt64 = 1 << 20

    static func fileSize(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    @Test func aGrowIsPersistedWithItsMapsAndTheFormerSizeStillOpensIt() async throws {
        let f = try ReplicaFixture("grow")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        let record = EpochRecord(epoch: 3, membershipID: 7, members: ["a", "b"])
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: 64 * Self.mib, loop: loop, logger: logger)
            // A member is absent: its dirty map must cover the new regions too.
            try await store.setMembership(MembershipUpdate(record: record, startTracking: [
                TrackRequest(member: "b", base: EpochRecord(epoch: 2, membershipID: 1, members: ["a", "b"]), initialExtents: []),
            ]))
            let block = loop.buffers.take(4096)
            defer { loop.buffers.give(block) }
            for i in 0..<4096 { block.base.storeBytes(of: UInt8(0x5A), toByteOffset: i, as: UInt8.self) }
            try await store.admit(offset: Self.mib, length: 4096, epoch: 3, rebuild: false)
            try await store.write(offset: Self.mib, from: block, fua: true, rebuild: false)

            // Smaller and unaligned sizes are refused; a stale epoch is fenced.
            await #expect(throws: WireStatus.badRequest) { try await store.resize(to: 32 * Self.mib, epoch: 3) }
            await #expect(throws: WireStatus.badRequest) { try await store.resize(to: 64 * Self.mib + 100, epoch: 3) }
            await #expect(throws: WireStatus.staleEpoch) { try await store.resize(to: 128 * Self.mib, epoch: 2) }

            // A member grows at a new epoch, the size persisted with the record.
            let next = EpochRecord(epoch: 4, membershipID: 8, members: ["a"])
            try await store.setMembership(MembershipUpdate(record: next, size: 128 * Self.mib))
            #expect(await store.size == 128 * Self.mib)
            // A write past the old end is admitted and marks the new regions of every map.
            try await store.admit(offset: 100 * Self.mib, length: 4096, epoch: 4, rebuild: false)
            try await store.write(offset: 100 * Self.mib, from: block, fua: true, rebuild: false)
            try await store.flush()
            let dirty = await store.dirtyExtents(DirtyQuery(member: "b", base: EpochRecord(epoch: 2, membershipID: 1, members: ["a", "b"])))
            #expect(dirty.extents.contains { $0.offset <= 100 * Self.mib && $0.end > 100 * Self.mib }, "\(dirty)")
            #expect(await store.intentBitmap.overlaps(offset: 100 * Self.mib, length: 4096))
            await store.close()
        }
        #expect(Self.fileSize(dir + "/volume.img") == 128 * Self.mib)

        // Reopened: the new size, the record, the map, the data on both sides of the old end;
        // the size it was created with still opens it, a size it never had does not.
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: 64 * Self.mib, loop: loop, logger: logger)
            #expect(await store.size == 128 * Self.mib)
            #expect(await store.record?.epoch == 4)
            #expect(await store.status().dirtyMaps.map(\.member) == ["b"])
            let back = loop.buffers.take(4096)
            defer { loop.buffers.give(back) }
            for offset in [Self.mib, 100 * Self.mib] {
                try await store.read(offset: offset, length: 4096, into: back)
                #expect(back.base.load(fromByteOffset: 4095, as: UInt8.self) == 0x5A)
            }
            await store.close()
        }
        await #expect(throws: ReplicaError.self) {
            try await loop.run { _ = try ReplicaStore(directory: dir, size: 96 * Self.mib, loop: loop, logger: logger) }
        }
    }

    @Test func aGrowCutShortBeforeItsMetadataIsUndoneOnReopen() async throws {
        let f = try ReplicaFixture("grow")
        defer { withExtendedLifetime(f) {} }
        let (dir, loop, logger) = (f.directory, f.loop, f.logger)
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: 64 * Self.mib, loop: loop, logger: logger)
            await store.close()
        }
        // As a crash after the data file was extended and before replica.json named the size.
        #expect(truncate(dir + "/volume.img", off_t(128 * Self.mib)) == 0)
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: nil, loop: loop, logger: logger)
            #expect(await store.size == 64 * Self.mib)
            await store.close()
        }
        #expect(Self.fileSize(dir + "/volume.img") == 64 * Self.mib)
    }
}
