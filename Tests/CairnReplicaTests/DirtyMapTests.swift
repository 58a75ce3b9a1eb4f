@testable import CairnReplica
import CairnIO
import CairnWire
import Glibc
import Testing

/// The dirty-region map is what lets a returning replica copy only what it missed (invariant 3
/// rests on it): a region it does not mark is a region the rebuild skips.
@Suite struct DirtyMapTests {
    static let g: UInt64 = 64 << 10
    static let base = EpochRecord(epoch: 7, membershipID: 1, members: ["a", "b"])

    static func path(_ tag: String) -> String {
        "/tmp/cairn-dirtymap-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).map"
    }

    @Test func marksEveryRegionARangeTouchesAndMergesNeighbours() throws {
        let p = Self.path("mark")
        defer { unlink(p) }
        // 1 MiB and 4 KiB: 17 regions, the last one partial.
        let size: UInt64 = (1 << 20) + 4096
        let m = try DirtyMap(creating: p, member: "c", base: Self.base, granularity: Self.g, volumeSize: size, initial: [])
        #expect(m.extents(volumeSize: size).isEmpty)
        #expect(m.mark(offset: 1000, length: 10))  // inside region 0
        #expect(!m.mark(offset: 0, length: 512), "a region already dirty gains nothing")
        #expect(m.mark(offset: 3 * Self.g - 1, length: 2))  // the last byte of region 2, the first of 3
        #expect(m.mark(offset: 1 << 20, length: 4096))  // the partial region 16
        #expect(!m.mark(offset: 5 * Self.g, length: 0))
        #expect(m.dirtyRegions == 4)
        #expect(m.extents(volumeSize: size) == [Extent(offset: 0, length: Self.g),
                                                 Extent(offset: 2 * Self.g, length: 2 * Self.g),
                                                 Extent(offset: 1 << 20, length: 4096)])
        #expect(m.mark(offset: Self.g, length: 1))  // region 1 joins 0 and 2-3 into one extent
        #expect(m.extents(volumeSize: size) == [Extent(offset: 0, length: 4 * Self.g),
                                                 Extent(offset: 1 << 20, length: 4096)])
    }

    @Test func whatIsPersistedIsWhatAReopenedMapHolds() async throws {
        let p = Self.path("persist")
        defer { unlink(p) }
        // 64 GiB: a million regions, the bitmap spans 32 pages.
        let size: UInt64 = 64 << 30
        let initial = [Extent(offset: 5 * Self.g, length: 3 * Self.g)]
        let marked: [(UInt64, UInt64)] = [(0, 1), (10 << 30, 1 << 20), (size - 4096, 4096), (33 << 30, Self.g + 1)]
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let before = try await loop.run { () async throws -> [Extent] in
            let m = try DirtyMap(creating: p, member: "c", base: Self.base, granularity: Self.g, volumeSize: size,
                                 initial: initial)
            #expect(m.pendingPages.isEmpty, "creating the map wrote all of it")
            for (o, l) in marked { m.mark(offset: o, length: l) }
            #expect(m.pendingPages.count == 4, "four bitmap pages gained bits")
            try await m.persistPending(loop: loop)
            #expect(m.pendingPages.isEmpty)
            return m.extents(volumeSize: size)
        }
        #expect(before.count == 5)
        let reopened = try DirtyMap(opening: p, member: "c", base: Self.base, granularity: Self.g, volumeSize: size)
        #expect(reopened.extents(volumeSize: size) == before)
        #expect(reopened.dirtyRegions == 3 + 1 + 16 + 1 + 2)
    }
}
