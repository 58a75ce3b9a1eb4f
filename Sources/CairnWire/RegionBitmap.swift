/// One bit per `granularity` bytes of a volume. It carries a replica's write-intent map (the
/// regions where it may differ from the rest of the set: `intentMap`'s reply) and the regions
/// a controller declares settled (`settle`'s payload). Bit r is bit r % 64 of word r / 64, the
/// layout of the replicas' map files too.
///
/// On the wire: granularity u64, region count u64, then the words, all little-endian.
public struct RegionBitmap: Sendable, Equatable {
    /// The write-intent granularity: a resync copies whole regions. Coarser than the dirty maps'
    /// 64 KiB, so that scattered writes over a large volume find their region still marked and
    /// rarely wait for a map page to be written first.
    public static let intentGranularity: UInt64 = 1 << 20
    /// The dirty maps' granularity (what a returning replica copies by delta).
    public static let dirtyGranularity: UInt64 = 64 << 10

    public let granularity: UInt64
    public let regions: Int
    public private(set) var words: [UInt64]

    public init(volumeSize: UInt64, granularity: UInt64 = RegionBitmap.intentGranularity) {
        precondition(granularity > 0)
        self.granularity = granularity
        regions = Int((volumeSize + granularity - 1) / granularity)
        words = [UInt64](repeating: 0, count: (regions + 63) / 64)
    }

    /// A bitmap over the same regions as `words` (as a map file holds them).
    public init(words: [UInt64], regions: Int, granularity: UInt64) {
        precondition(words.count == (regions + 63) / 64)
        self.granularity = granularity
        self.regions = regions
        self.words = words
    }

    /// The same bits over `volumeSize` (at least what it covers now): the new regions are clear.
    public func grown(toVolumeSize volumeSize: UInt64) -> RegionBitmap {
        grown(toRegions: Int((volumeSize + granularity - 1) / granularity))
    }

    public func grown(toRegions n: Int) -> RegionBitmap {
        precondition(n >= regions)
        return RegionBitmap(words: words + [UInt64](repeating: 0, count: (n + 63) / 64 - words.count), regions: n,
                            granularity: granularity)
    }

    /// The same bits over `volumeSize`, grown (new regions clear) or cut (regions past it dropped).
    public func resized(toVolumeSize volumeSize: UInt64) -> RegionBitmap {
        let n = Int((volumeSize + granularity - 1) / granularity)
        if n >= regions { return grown(toRegions: n) }
        var w = Array(words.prefix((n + 63) / 64))
        if n & 63 != 0, let last = w.indices.last { w[last] &= (UInt64(1) << UInt64(n & 63)) - 1 }
        return RegionBitmap(words: w, regions: n, granularity: granularity)
    }

    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    private func span(_ offset: UInt64, _ length: UInt64) -> ClosedRange<Int>? {
        guard length > 0 else { return nil }
        let first = Int(offset / granularity)
        let last = min(regions - 1, Int((offset + length - 1) / granularity))
        return first <= last ? first...last : nil
    }

    public func contains(region r: Int) -> Bool { words[r >> 6] & (UInt64(1) << UInt64(r & 63)) != 0 }

    /// Marks every region that [offset, offset+length) touches.
    public mutating func mark(offset: UInt64, length: UInt64) {
        guard let s = span(offset, length) else { return }
        for r in s { words[r >> 6] |= UInt64(1) << UInt64(r & 63) }
    }

    /// Unmarks every region that [offset, offset+length) touches.
    public mutating func clear(offset: UInt64, length: UInt64) {
        guard let s = span(offset, length) else { return }
        for r in s { words[r >> 6] &= ~(UInt64(1) << UInt64(r & 63)) }
    }

    /// Whether any region that [offset, offset+length) touches is marked.
    public func overlaps(offset: UInt64, length: UInt64) -> Bool {
        guard let s = span(offset, length) else { return false }
        for r in s where contains(region: r) { return true }
        return false
    }

    public mutating func formUnion(_ other: RegionBitmap) {
        precondition(other.regions == regions && other.granularity == granularity)
        for i in words.indices { words[i] |= other.words[i] }
    }

    public mutating func subtract(_ other: RegionBitmap) {
        precondition(other.regions == regions && other.granularity == granularity)
        for i in words.indices { words[i] &= ~other.words[i] }
    }

    public mutating func removeAll() {
        for i in words.indices { words[i] = 0 }
    }

    /// The marked regions as merged byte extents, clipped to `volumeSize`. With `maxCount`, runs
    /// closer than a growing gap are merged until at most that many are left: a coarser list
    /// covers more than the bits (fine for what is copied), never less.
    public func extents(volumeSize: UInt64, maxCount: Int = .max) -> [Extent] {
        var gap: UInt64 = 0
        while true {
            var out: [Extent] = []
            var r = 0
            while r < regions {
                let w = words[r >> 6]
                if w == 0 && r & 63 == 0 { r += 64; continue }
                if w & (UInt64(1) << UInt64(r & 63)) != 0 {
                    let off = UInt64(r) * granularity
                    let end = min(off + granularity, volumeSize)
                    if let i = out.indices.last, off - out[i].end <= gap {
                        out[i].length = end - out[i].offset
                    } else {
                        out.append(Extent(offset: off, length: end - off))
                    }
                }
                r += 1
            }
            if out.count <= max(1, maxCount) { return out }
            gap = max(granularity, gap * 2)
        }
    }

    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(16 + words.count * 8)
        func put(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(granularity)
        put(UInt64(regions))
        for w in words { put(w) }
        return out
    }

    /// Decodes a bitmap that must cover exactly `volumeSize` at `granularity`.
    public init(decoding bytes: [UInt8], volumeSize: UInt64,
                granularity: UInt64 = RegionBitmap.intentGranularity) throws(WireError) {
        try self.init(decoding: bytes, regions: Int((volumeSize + granularity - 1) / granularity), granularity: granularity)
    }

    /// Decodes a bitmap at `granularity` that covers at most `maxVolumeSize` bytes.
    public init(decoding bytes: [UInt8], maxVolumeSize: UInt64,
                granularity: UInt64 = RegionBitmap.intentGranularity) throws(WireError) {
        guard bytes.count >= 16 else { throw .badMessage("region bitmap of \(bytes.count) bytes") }
        let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        let most = maxVolumeSize / granularity + (maxVolumeSize % granularity == 0 ? 0 : 1)
        guard n <= most else { throw .badMessage("region bitmap for \(n) regions; the volume has \(most)") }
        try self.init(decoding: bytes, regions: Int(n), granularity: granularity)
    }

    private init(decoding bytes: [UInt8], regions: Int, granularity: UInt64) throws(WireError) {
        func get(_ i: Int) -> UInt64 {
            bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: i, as: UInt64.self)) }
        }
        // The length first: nothing is allocated for a count the bytes do not back.
        guard bytes.count == 16 + (regions + 63) / 64 * 8 else { throw .badMessage("region bitmap of \(bytes.count) bytes") }
        let expected = RegionBitmap(words: [UInt64](repeating: 0, count: (regions + 63) / 64), regions: regions,
                                    granularity: granularity)
        guard get(0) == granularity, get(8) == UInt64(expected.regions) else {
            throw .badMessage("region bitmap for \(get(8)) regions of \(get(0)) bytes, not \(expected.regions) of \(granularity)")
        }
        var words = expected.words
        for i in words.indices { words[i] = get(16 + i * 8) }
        // Bits past the last region would name regions that do not exist.
        if expected.regions & 63 != 0, let last = words.indices.last {
            words[last] &= (UInt64(1) << UInt64(expected.regions & 63)) - 1
        }
        self.init(words: words, regions: expected.regions, granularity: granularity)
    }
}
