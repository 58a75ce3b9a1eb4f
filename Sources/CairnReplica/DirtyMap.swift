import CairnIO
import CairnWire
import DequeModule
import Glibc

/// The regions an absent member missed, one bit per `granularity` bytes, kept by a healthy
/// replica in its own file so the record survives a crash of this replica (invariant 7). A write
/// that dirties a clean region persists that bitmap page before the write is acknowledged;
/// writes to regions already dirty cost nothing more.
final class DirtyMap {
    static let pageBytes = 4096
    static let wordsPerPage = pageBytes / 8

    let member: String
    let base: EpochRecord
    let granularity: UInt64
    private(set) var regions: Int
    let path: String
    private(set) var words: [UInt64]
    private(set) var dirtyRegions: UInt64 = 0
    private let fd: Int32
    // Page writes are serialized: each copies the current bits, so the last one holds them all.
    private var writing = false
    private var waiters = Deque<UnsafeContinuation<Void, Never>>()
    /// Bitmap pages that gained bits since they were last written.
    private(set) var pendingPages = Set<Int>()

    /// Creates the map file with `initial` extents marked and makes it durable.
    init(creating path: String, member: String, base: EpochRecord, granularity: UInt64, volumeSize: UInt64,
         initial: [Extent]) throws(ReplicaError) {
        self.member = member
        self.base = base
        self.granularity = granularity
        self.path = path
        regions = Int((volumeSize + granularity - 1) / granularity)
        words = [UInt64](repeating: 0, count: (regions + 63) / 64)
        let f = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard f >= 0 else { throw .io("open \(path): \(errnoText())") }
        fd = f
        for e in initial { _ = mark(offset: e.offset, length: e.length) }
        let fileBytes = DirtyMap.fileBytes(words.count)
        var image = [UInt8](repeating: 0, count: fileBytes)
        image.withUnsafeMutableBytes { raw in
            for (i, w) in words.enumerated() { raw.storeBytes(of: w.littleEndian, toByteOffset: i * 8, as: UInt64.self) }
        }
        let n = image.withUnsafeBytes { pwrite(f, $0.baseAddress!, $0.count, 0) }
        guard n == fileBytes else { throw errno == ENOSPC ? .noSpace : .io("write \(path): \(errnoText())") }
        guard fdatasync(f) == 0 else { throw .io("fdatasync \(path): \(errnoText())") }
        pendingPages.removeAll()  // all of it was just written
    }

    /// Opens an existing map file.
    init(opening path: String, member: String, base: EpochRecord, granularity: UInt64, volumeSize: UInt64) throws(ReplicaError) {
        self.member = member
        self.base = base
        self.granularity = granularity
        self.path = path
        regions = Int((volumeSize + granularity - 1) / granularity)
        words = [UInt64](repeating: 0, count: (regions + 63) / 64)
        let f = open(path, O_RDWR | O_CLOEXEC)
        guard f >= 0 else { throw .io("open \(path): \(errnoText())") }
        fd = f
        var image = [UInt8](repeating: 0, count: DirtyMap.fileBytes(words.count))
        let n = image.withUnsafeMutableBytes { pread(f, $0.baseAddress!, $0.count, 0) }
        guard n == image.count else { throw .io("\(path) is short or unreadable") }
        image.withUnsafeBytes { raw in
            for i in words.indices {
                words[i] = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                dirtyRegions += UInt64(words[i].nonzeroBitCount)
            }
        }
    }

    deinit { close(fd) }

    static func fileBytes(_ wordCount: Int) -> Int {
        max(pageBytes, (wordCount * 8 + pageBytes - 1) / pageBytes * pageBytes)
    }

    var info: DirtyMapInfo {
        DirtyMapInfo(member: member, base: base, granularity: granularity, dirtyRegions: dirtyRegions)
    }

    /// Marks the regions under [offset, offset+length) in memory; pages that gained a bit wait in
    /// `pendingPages` for `persistPending`. Returns whether any page did.
    @discardableResult
    func mark(offset: UInt64, length: UInt64) -> Bool {
        guard length > 0 else { return false }
        let first = Int(offset / granularity)
        let last = min(regions - 1, Int((offset + length - 1) / granularity))
        guard first <= last else { return false }
        var gained = false
        var r = first
        while r <= last {
            let w = r >> 6
            let bit = UInt64(1) << UInt64(r & 63)
            if words[w] & bit == 0 {
                words[w] |= bit
                dirtyRegions += 1
                pendingPages.insert(w / DirtyMap.wordsPerPage)
                gained = true
            }
            r += 1
        }
        return gained
    }

    /// Unmarks the regions `bits` marks (same regions and granularity); the pages that lost bits
    /// wait for `persistPending` like marked ones.
    func clear(_ bits: RegionBitmap) {
        precondition(bits.regions == regions && bits.granularity == granularity)
        for (i, w) in bits.words.enumerated() where words[i] & w != 0 {
            dirtyRegions -= UInt64((words[i] & w).nonzeroBitCount)
            words[i] &= ~w
            pendingPages.insert(i / DirtyMap.wordsPerPage)
        }
    }

    func clearAll() {
        clear(bitmap)
    }

    var bitmap: RegionBitmap { RegionBitmap(words: words, regions: regions, granularity: granularity) }

    /// Whether `persistPending` has anything to do (or to wait for): checked before the call,
    /// which every write makes.
    var needsPersist: Bool { !pendingPages.isEmpty || writing }

    /// Writes every pending page (with its current bits) to the map file. Page writes are one at
    /// a time; a caller that finds one running waits for it, then writes what is still pending,
    /// so on return every bit marked before the call is in the file.
    nonisolated(nonsending) func persistPending(loop: EventLoop) async throws(ReplicaError) {
        guard !pendingPages.isEmpty || writing else { return }
        while writing {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                if writing { waiters.append(c) } else { c.resume() }
            }
        }
        writing = true
        defer {
            writing = false
            if let w = waiters.popFirst() { w.resume() }
        }
        let pages = pendingPages.sorted()
        pendingPages.removeAll(keepingCapacity: true)
        guard !pages.isEmpty else { return }
        let buf = loop.buffers.take(DirtyMap.pageBytes)
        defer { loop.buffers.give(buf) }
        for page in pages {
            buf.zero()
            let firstWord = page * DirtyMap.wordsPerPage
            let lastWord = min(words.count, firstWord + DirtyMap.wordsPerPage)
            var i = firstWord
            while i < lastWord {
                buf.base.storeBytes(of: words[i].littleEndian, toByteOffset: (i - firstWord) * 8, as: UInt64.self)
                i += 1
            }
            do {
                try await loop.writeFully(fd: fd, from: buf.base, length: DirtyMap.pageBytes,
                                          offset: UInt64(page * DirtyMap.pageBytes))
            } catch {
                pendingPages.formUnion(pages)
                if case .errno(let e, _) = error, e == ENOSPC { throw .noSpace }
                throw .io("dirty map \(path): \(error)")
            }
        }
    }

    /// Makes the map file durable (with a flush of the data).
    nonisolated(nonsending) func sync(loop: EventLoop) async throws(ReplicaError) {
        do { try await loop.fdatasync(fd: fd) } catch { throw .io("fdatasync \(path): \(error)") }
    }

    /// Covers a volume grown to `volumeSize`: the file is extended (its new pages read as
    /// clean) and made durable; the new regions start clean.
    func grow(volumeSize: UInt64) throws(ReplicaError) {
        let n = Int((volumeSize + granularity - 1) / granularity)
        guard n > regions else { return }
        let wordCount = (n + 63) / 64
        let bytes = DirtyMap.fileBytes(wordCount)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("fstat \(path): \(errnoText())") }
        if Int(st.st_size) < bytes {
            guard ftruncate(fd, off_t(bytes)) == 0 else { throw errno == ENOSPC ? .noSpace : .io("grow \(path): \(errnoText())") }
            guard fsync(fd) == 0 else { throw .io("fsync \(path): \(errnoText())") }
        }
        words += [UInt64](repeating: 0, count: wordCount - words.count)
        regions = n
    }

    /// The dirty regions as merged byte extents, clipped to the volume.
    func extents(volumeSize: UInt64) -> [Extent] {
        bitmap.extents(volumeSize: volumeSize)
    }
}
