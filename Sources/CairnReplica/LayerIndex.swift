/// Which layer of the head's chain holds each granule (4 KiB) of the volume: the newest one that
/// has it, or none (the granule reads as zeros). A read looks its granules up here, so it costs
/// the same however many snapshots lie below the head. Two levels: a word per 2 MiB chunk that is
/// either one slot for the whole chunk or the number of a page of per-granule slots, so a volume
/// written in large runs costs a few bytes per chunk, and a fully fragmented one two bytes per
/// granule. Rebuilt from the layer files' allocation (SEEK_DATA) when the replica opens.
public struct LayerIndex: Sendable {
    /// No layer holds the granule.
    static let none: UInt16 = 0
    static let granulesPerChunk = 512

    let granule: UInt64
    private(set) var granules: Int
    /// >= 0: a page number in `pages`; < 0: every granule of the chunk is slot -(value + 1).
    private var chunks: [Int32]
    private var pages: [UInt16] = []
    private var freePages: [Int32] = []

    init(granule: UInt64, volumeSize: UInt64) {
        self.granule = granule
        granules = Int((volumeSize + granule - 1) / granule)
        chunks = [Int32](repeating: -1, count: (granules + Self.granulesPerChunk - 1) / Self.granulesPerChunk)
    }

    @inline(__always)
    func slot(_ g: Int) -> UInt16 {
        let c = chunks[g / Self.granulesPerChunk]
        if c < 0 { return UInt16(truncatingIfNeeded: -(Int(c) + 1)) }
        return pages[Int(c) * Self.granulesPerChunk + g % Self.granulesPerChunk]
    }

    /// The granule of byte `offset` and the slot that holds it, with how many granules from it
    /// share that slot (at most `limit`).
    func run(from g: Int, limit: Int) -> (slot: UInt16, count: Int) {
        let s = slot(g)
        var n = 1
        let end = min(granules, g + limit)
        var i = g + 1
        while i < end {
            let c = chunks[i / Self.granulesPerChunk]
            if c < 0 && i % Self.granulesPerChunk == 0 && UInt16(truncatingIfNeeded: -(Int(c) + 1)) == s {
                let step = min(Self.granulesPerChunk, end - i)
                n += step
                i += step
                continue
            }
            guard slot(i) == s else { break }
            n += 1
            i += 1
        }
        return (s, n)
    }

    /// Sets granules [first, first+count) to `value`.
    mutating func set(_ first: Int, _ count: Int, to value: UInt16) {
        var g = first
        let end = min(granules, first + count)
        while g < end {
            let ci = g / Self.granulesPerChunk
            let inChunk = g % Self.granulesPerChunk
            let n = min(Self.granulesPerChunk - inChunk, end - g)
            let c = chunks[ci]
            if n == Self.granulesPerChunk {
                if c >= 0 { freePages.append(c) }
                chunks[ci] = -(Int32(value) + 1)
            } else if c < 0 {
                let old = UInt16(truncatingIfNeeded: -(Int(c) + 1))
                if old != value {
                    let p = newPage(filledWith: old)
                    chunks[ci] = p
                    fill(page: p, from: inChunk, count: n, value)
                }
            } else {
                fill(page: c, from: inChunk, count: n, value)
            }
            g += n
        }
    }

    /// Sets each granule of [first, first+count) to `value` where `replace` says so.
    mutating func update(_ first: Int, _ count: Int, where replace: (UInt16) -> Bool, to value: UInt16) {
        var g = first
        let end = min(granules, first + count)
        while g < end {
            let (s, n) = run(from: g, limit: end - g)
            if replace(s) { set(g, n, to: value) }
            g += n
        }
    }

    /// Every granule that holds `old` now holds `new`.
    mutating func relabel(_ old: UInt16, to new: UInt16) {
        for ci in chunks.indices {
            let c = chunks[ci]
            if c < 0 {
                if UInt16(truncatingIfNeeded: -(Int(c) + 1)) == old { chunks[ci] = -(Int32(new) + 1) }
            } else {
                let base = Int(c) * Self.granulesPerChunk
                for i in base..<(base + Self.granulesPerChunk) where pages[i] == old { pages[i] = new }
            }
        }
    }

    mutating func grow(volumeSize: UInt64) {
        let n = Int((volumeSize + granule - 1) / granule)
        guard n > granules else { return }
        granules = n
        let c = (n + Self.granulesPerChunk - 1) / Self.granulesPerChunk
        if c > chunks.count { chunks += [Int32](repeating: -1, count: c - chunks.count) }
    }

    mutating func clear() {
        chunks = [Int32](repeating: -1, count: chunks.count)
        pages = []
        freePages = []
    }

    /// Bytes the index takes (for /metrics and the note on memory).
    var bytes: Int { chunks.count * 4 + pages.count * 2 }

    private mutating func newPage(filledWith v: UInt16) -> Int32 {
        if let p = freePages.popLast() {
            let base = Int(p) * Self.granulesPerChunk
            for i in base..<(base + Self.granulesPerChunk) { pages[i] = v }
            return p
        }
        let p = Int32(pages.count / Self.granulesPerChunk)
        pages += [UInt16](repeating: v, count: Self.granulesPerChunk)
        return p
    }

    private mutating func fill(page p: Int32, from: Int, count: Int, _ v: UInt16) {
        let base = Int(p) * Self.granulesPerChunk + from
        for i in base..<(base + count) { pages[i] = v }
    }
}
