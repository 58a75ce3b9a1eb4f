import CairnWire
import Testing

/// The region bitmap carries a replica's write-intent map to a starting controller and the
/// settled regions back: a region lost on the way is a region a resync skips.
@Suite struct RegionBitmapTests {
    static let g = RegionBitmap.dirtyGranularity

    @Test func marksClearsAndTestsEveryRegionARangeTouches() {
        // 1 MiB and 4 KiB: 17 regions, the last one partial.
        let size: UInt64 = (1 << 20) + 4096
        var b = RegionBitmap(volumeSize: size, granularity: Self.g)
        #expect(b.regions == 17 && b.isEmpty)
        b.mark(offset: 3 * Self.g - 1, length: 2)  // the last byte of region 2, the first of 3
        b.mark(offset: 1 << 20, length: 4096)
        #expect(b.count == 3)
        #expect(b.overlaps(offset: 2 * Self.g, length: 1) && b.overlaps(offset: 0, length: size))
        #expect(!b.overlaps(offset: 0, length: 2 * Self.g) && !b.overlaps(offset: 4 * Self.g, length: 0))
        #expect(b.extents(volumeSize: size) == [Extent(offset: 2 * Self.g, length: 2 * Self.g),
                                                Extent(offset: 1 << 20, length: 4096)])
        b.clear(offset: 3 * Self.g, length: 1)
        #expect(b.extents(volumeSize: size) == [Extent(offset: 2 * Self.g, length: Self.g),
                                                Extent(offset: 1 << 20, length: 4096)])
    }

    @Test func unionAndSubtraction() {
        let size: UInt64 = 100 * Self.g
        var a = RegionBitmap(volumeSize: size, granularity: Self.g), b = RegionBitmap(volumeSize: size, granularity: Self.g)
        a.mark(offset: 0, length: 10 * Self.g)
        b.mark(offset: 5 * Self.g, length: 70 * Self.g)
        var u = a
        u.formUnion(b)
        #expect(u.extents(volumeSize: size) == [Extent(offset: 0, length: 75 * Self.g)])
        u.subtract(a)
        #expect(u.extents(volumeSize: size) == [Extent(offset: 10 * Self.g, length: 65 * Self.g)])
        u.removeAll()
        #expect(u.isEmpty)
    }

    @Test func aCappedExtentListCoversEveryMarkedRegion() {
        let size: UInt64 = 1000 * Self.g
        var b = RegionBitmap(volumeSize: size, granularity: Self.g)
        for r in stride(from: 0, to: 1000, by: 3) { b.mark(offset: UInt64(r) * Self.g, length: 1) }
        let exact = b.extents(volumeSize: size)
        #expect(exact.count == 334)
        let capped = b.extents(volumeSize: size, maxCount: 10)
        #expect(capped.count <= 10)
        for e in exact {
            #expect(capped.contains { $0.offset <= e.offset && e.end <= $0.end }, "\(e) is not covered")
        }
    }

    @Test func roundTripsAndRefusesABitmapOfAnotherShape() throws {
        let size: UInt64 = (5 << 30) + 512  // 81921 regions: the last word is partial
        var b = RegionBitmap(volumeSize: size, granularity: Self.g)
        for o: UInt64 in [0, 1 << 30, size - 512] { b.mark(offset: o, length: 512) }
        let back = try RegionBitmap(decoding: b.encoded, volumeSize: size, granularity: Self.g)
        #expect(back == b)
        #expect(throws: WireError.self) { try RegionBitmap(decoding: b.encoded, volumeSize: size + Self.g, granularity: Self.g) }
        #expect(throws: WireError.self) { try RegionBitmap(decoding: Array(b.encoded.dropLast(8)), volumeSize: size, granularity: Self.g) }
        // Bits past the last region are dropped, not kept as regions that do not exist.
        var bytes = b.encoded
        bytes[bytes.count - 1] = 0xff
        let trimmed = try RegionBitmap(decoding: bytes, volumeSize: size, granularity: Self.g)
        #expect(trimmed == b, "only bit 0 of the last word is a region (81920)")
    }

    @Test func resizedKeepsTheBitsItCoversAndDecodingBoundsTheSize() throws {
        var b = RegionBitmap(volumeSize: 70 * Self.g, granularity: Self.g)
        b.mark(offset: 0, length: Self.g)
        b.mark(offset: 69 * Self.g, length: 1)
        let grown = b.resized(toVolumeSize: 200 * Self.g)
        #expect(grown.regions == 200 && grown.count == 2 && grown.contains(region: 69) && !grown.contains(region: 70))
        let cut = grown.resized(toVolumeSize: 65 * Self.g)
        #expect(cut.regions == 65 && cut.count == 1 && cut.contains(region: 0))
        // A bitmap from a replica not grown yet decodes under a larger bound, not a smaller one.
        let back = try RegionBitmap(decoding: b.encoded, maxVolumeSize: 200 * Self.g, granularity: Self.g)
        #expect(back == b)
        #expect(throws: WireError.self) { try RegionBitmap(decoding: b.encoded, maxVolumeSize: 60 * Self.g, granularity: Self.g) }
        // A region count the bytes do not back is refused before anything is allocated for it.
        var forged = b.encoded
        forged.replaceSubrange(8..<16, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian, Array.init))
        #expect(throws: WireError.self) { try RegionBitmap(decoding: forged, maxVolumeSize: .max, granularity: Self.g) }
    }
}
