import CairnBlock
import CairnIO
import CairnWire
import Glibc
import Logging

/// One replica's directory: the volume's data in layers of sparse files (O_DIRECT through the
/// loop's io_uring), its metadata (epoch record, dirty maps, snapshots) in replica.json, a
/// dirty-region map file per absent member, and its write-intent map (intent.map): every region a
/// write reached here stays marked until the controller settles it (the write is on every healthy
/// member), so after a controller crash the regions where members may differ are known.
///
/// Snapshots are layers (redirect-on-write): writes go to the head layer; a snapshot freezes the
/// head and starts a new, empty one on it, copying nothing. `LayerIndex` says which layer of the
/// head's chain holds each 4 KiB granule, so a read costs the same however many snapshots there
/// are. Deleting a snapshot merges what its layer alone holds into the layers on it, in the
/// background (ReplicaStore+Snapshots.swift). Pinned to the event loop; every request of every
/// connection is served here, interleaving only at awaits.
public actor ReplicaStore {
    public nonisolated let loop: EventLoop
    public nonisolated let directory: String
    public nonisolated let replicaID: String
    /// The volume's size here: set on creation, grown by the controller (`resize`), never shrunk.
    public private(set) var size: UInt64
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    /// Bytes per dirty-map bit: a returning replica copies whole regions of this size.
    public static let dirtyGranularity = RegionBitmap.dirtyGranularity
    /// Offsets and lengths must be multiples of this (O_DIRECT, and the smallest SCSI block).
    public static let alignment: UInt64 = 512
    /// The unit of the layer index: a filesystem block, so a layer file's allocation says
    /// exactly which granules it holds.
    public static let granule: UInt64 = 4096

    /// The head layer: every write of the volume lands here.
    var data: FileBlockStore
    var meta: ReplicaMetadata
    var maps: [String: DirtyMap] = [:]
    let intent: DirtyMap
    var logger: Logger
    var metaPath: String { directory + "/replica.json" }

    /// The layer files, their slots and the index of the head's chain.
    var layers: LayerSet
    /// Bumped by every change of the layers (see `SnapshotList.generation`).
    var generation: UInt64 = 1
    /// Head writes in flight, by generation (two): a merge into the head waits for the older one.
    var headWrites: [Int] = [0, 0]
    var writeGeneration = 0
    var drainWaiters: [(gen: Int, c: UnsafeContinuation<Void, Never>)] = []
    /// A range of the head a merge is filling: writes to it wait.
    var mergeWindow: (start: UInt64, end: UInt64)?
    var windowWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Granules being copied up from a lower layer before a write of part of them.
    var promoting: Set<Int> = []
    var promoteWaiters: [UnsafeContinuation<Void, Never>] = []
    var slotWaiters: [UnsafeContinuation<Void, Never>] = []
    var merging = false
    var stopMerging = false
    /// An empty layer file made ahead for the next snapshot's head (not in the metadata).
    var spareHead: (String, FileBlockStore)?
    /// Snapshot views open for readers (clones, backups), by handle.
    var views: [UInt32: OpenView] = [:]
    var nextViewHandle: UInt32 = 1
    /// Bytes per second a merge copies when the delete did not say.
    public static let defaultMergeRate: UInt64 = 64 << 20
    var mergeRate: UInt64 = ReplicaStore.defaultMergeRate

    // Counters for `status` and /metrics.
    public private(set) var reads: UInt64 = 0
    public private(set) var writes: UInt64 = 0
    public private(set) var readBytes: UInt64 = 0
    public private(set) var writeBytes: UInt64 = 0
    public private(set) var rebuildBytesWritten: UInt64 = 0
    public private(set) var errors: UInt64 = 0
    /// Handshakes refused, by why (/metrics).
    public private(set) var refusedHandshakes: [HandshakeRefusal: UInt64] = [:]

    /// Opens DIR. With `size` on first start it creates the data file and metadata; later starts
    /// reopen them and refuse another size, unless it is one the replica had before a controller
    /// grew it. Without `size`, DIR must already hold a replica.
    public init(directory: String, size: UInt64?, loop: EventLoop, logger: Logger) throws(ReplicaError) {
        self.loop = loop
        self.directory = directory
        self.logger = logger
        try makeDirectories(directory)
        let metaPath = directory + "/replica.json"
        var meta: ReplicaMetadata
        if let m = try ReplicaMetadata.load(metaPath) {
            if let s = size, s != m.size {
                guard m.formerSizes?.contains(s) == true else {
                    throw .config("\(directory) holds a replica of \(m.size) bytes, not the \(s) asked for (a volume grows through its controller)")
                }
                logger.notice("\(directory) holds \(m.size) bytes: the volume was grown from the \(s) asked for")
            }
            meta = m
            // A grow that stopped before the metadata named the new size: the data file was
            // extended first, and nothing past the old end was written (writes there come only
            // once every replica has the new size), so it goes back to the recorded size.
            var st = stat()
            let dataPath = directory + "/" + m.headFile
            if stat(dataPath, &st) == 0, UInt64(st.st_size) > m.size {
                logger.notice("volume.img is \(st.st_size) bytes, the metadata says \(m.size): an unfinished grow, undone")
                guard truncate(dataPath, off_t(m.size)) == 0 else { throw .io("truncate \(dataPath): \(errnoText())") }
            }
        } else {
            guard let s = size else { throw .config("\(directory) holds no replica yet: give --size to create one") }
            guard s > 0, s % ReplicaStore.alignment == 0 else { throw .config("size must be a positive multiple of 512") }
            meta = ReplicaMetadata(replicaID: ReplicaStore.newID(), size: s)
            try meta.save(metaPath, directory: directory)
        }
        do {
            data = try FileBlockStore(path: directory + "/" + meta.headFile, size: meta.size, blockSize: 512, loop: loop, logger: logger)
        } catch {
            throw .io("data file: \(error)")
        }
        do {
            layers = try LayerSet(meta: meta, head: data, directory: directory, loop: loop, logger: logger)
        } catch {
            throw .io("snapshot layers: \(error)")
        }
        replicaID = meta.replicaID
        self.size = meta.size
        var opened: [String: DirtyMap] = [:]
        for m in meta.maps {
            opened[m.member] = try DirtyMap(opening: directory + "/" + m.file, member: m.member, base: m.base,
                                            granularity: m.granularity, volumeSize: meta.size)
        }
        let intentPath = directory + "/intent.map"
        let noRecord = EpochRecord(epoch: 0, membershipID: 0, members: [])
        if access(intentPath, F_OK) == 0 {
            intent = try DirtyMap(opening: intentPath, member: "intent", base: noRecord,
                                  granularity: RegionBitmap.intentGranularity, volumeSize: meta.size)
        } else {
            intent = try DirtyMap(creating: intentPath, member: "intent", base: noRecord,
                                  granularity: RegionBitmap.intentGranularity, volumeSize: meta.size, initial: [])
        }
        self.meta = meta
        self.maps = opened
        self.logger[metadataKey: "replica"] = "\(meta.replicaID)"
        let deleting = meta.snapshotList.contains { $0.deleting == true }
        if deleting { loop.spawn { await self.runMerges() } }
    }

    static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &g) }
        return "r-" + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    public var record: EpochRecord? { meta.record }
    public var volume: String? { meta.volume }
    var dirtyMapInfos: [DirtyMapInfo] { maps.values.map(\.info).sorted { $0.member < $1.member } }

    // MARK: - Requests

    /// The handshake: a replica serves one volume for life. A controller of a larger size will
    /// grow it (`resize`) before it writes there; one of a smaller size is refused: this replica
    /// may hold data past its end.
    public func hello(_ h: Hello) throws(WireStatus) -> HelloReply {
        if h.reader == true {
            // A reader (a clone's controller) reads this volume's snapshots: the volume named must
            // be this one, and a wiped replica (its layers not copied yet) has nothing to give.
            guard let v = meta.volume, v == h.volume, meta.record != nil else {
                logger.warning("a reader for \(h.volume) refused: this replica holds \(meta.volume ?? "no volume")\(meta.record == nil ? " and no data yet" : "")")
                throw .wrongVolume
            }
            return HelloReply(replicaID: meta.replicaID, volume: v, size: meta.size, blockSize: h.blockSize,
                              record: meta.record, dirtyMaps: [])
        }
        guard h.size >= meta.size else {
            logger.warning("controller for \(h.volume) wants \(h.size) bytes; this replica holds \(meta.size) (a volume never shrinks)")
            throw .wrongVolume
        }
        if let v = meta.volume, v != h.volume {
            logger.warning("controller for volume \(h.volume) refused: this replica belongs to \(v)")
            throw .wrongVolume
        }
        if meta.volume == nil {
            var m = meta
            m.volume = h.volume
            do { try m.save(metaPath, directory: directory) } catch {
                logger.error("saving metadata: \(error)")
                throw .ioError
            }
            meta = m
        }
        return HelloReply(replicaID: meta.replicaID, volume: h.volume, size: meta.size, blockSize: h.blockSize,
                          record: meta.record, dirtyMaps: dirtyMapInfos)
    }

    public func countRefusal(_ why: HandshakeRefusal) {
        refusedHandshakes[why, default: 0] += 1
    }

    /// Fencing: a controller older than the newest membership persisted here is refused.
    public func checkEpoch(_ epoch: UInt64) throws(WireStatus) {
        if let r = meta.record, epoch < r.epoch { throw .staleEpoch }
    }

    func checkRange(_ offset: UInt64, _ length: UInt64) throws(WireStatus) {
        guard length > 0, offset % Self.alignment == 0, length % Self.alignment == 0,
              offset <= meta.size, length <= meta.size - offset else { throw .badRequest }
    }

    /// Admits a write or unmap when it is received, before the next frame is read: the epoch is
    /// checked and the dirty maps marked in arrival order, so a membership update or a dirty-map
    /// query that follows it on the connection sees it. The map pages are persisted by the
    /// request's own task, before its data.
    public func admit(offset: UInt64, length: UInt64, epoch: UInt64, rebuild: Bool) throws(WireStatus) {
        try checkEpoch(epoch)
        try checkRange(offset, length)
        if !rebuild {
            intent.mark(offset: offset, length: length)
            for m in maps.values { m.mark(offset: offset, length: length) }
        }
    }

    /// Reads what the volume holds (or, with a `LayerSelector`, what one layer alone holds).
    public func read(offset: UInt64, length: Int, into buffer: IOBuffer,
                     layer: UInt32 = LayerSelector.view) async throws(WireStatus) {
        try checkRange(offset, UInt64(length))
        do {
            if LayerSelector.isViewHandle(layer) {
                _ = try await readView(layer, offset: offset, length: length, into: buffer)
            } else if layer != LayerSelector.view {
                let (s, _, _) = try selected(layer)
                try await readLayer(s, offset: offset, into: IOBuffer(base: buffer.base, count: length))
            } else if !layers.chained {
                try await data.read(lba: offset / 512, count: length / 512, into: buffer)
            } else {
                try await readThroughLayers(offset: offset, length: length, into: buffer)
            }
        } catch let e as WireStatus {
            throw e
        } catch {
            errors += 1
            logger.error("read at \(offset) (+\(length)): \(error)")
            throw .ioError
        }
        reads += 1
        readBytes += UInt64(length)
    }

    /// Writes an admitted request's data (see `admit`) to the head, or (a rebuild, with a
    /// `LayerSelector`) into one layer.
    public func write(offset: UInt64, from buffer: IOBuffer, fua: Bool, rebuild: Bool,
                      layer: UInt32 = LayerSelector.view) async throws(WireStatus) {
        try await persistMaps()
        if layer == LayerSelector.view || layer == LayerSelector.head {
            try await writeHead(offset: offset, from: buffer, fua: fua)
        } else {
            guard rebuild else { throw .badRequest }
            try await writeSnapshotLayer(layer, offset: offset, from: buffer)
        }
        if rebuild {
            rebuildBytesWritten += UInt64(buffer.count)
        } else {
            writes += 1
            writeBytes += UInt64(buffer.count)
        }
    }

    /// Deallocates an admitted range (see `admit`): what the volume reads there is zeros. Under
    /// snapshots that takes zeros in the head; with `LayerSelector.head`, the head's range alone
    /// is deallocated and the layers below show through.
    public func unmap(offset: UInt64, length: UInt64, layer: UInt32 = LayerSelector.view) async throws(WireStatus) {
        try await persistMaps()
        if layer == LayerSelector.head {
            try await punchHead(offset: offset, length: length)
            return
        }
        guard layer == LayerSelector.view else { throw .badRequest }
        if layers.chained {
            try await zeroThroughLayers(offset: offset, length: length)
            return
        }
        if mergeWindow != nil { await waitOutsideWindow(offset, length) }
        do {
            try await data.unmap(lba: offset / 512, count: length / 512)
        } catch {
            throw failed(error, "unmap at \(offset) (+\(length))")
        }
        // Whole granules are holes now; a granule unmapped in part keeps its block.
        let g = Self.granule
        let first = (offset + g - 1) / g, last = min(offset + length, meta.size) / g
        if last > first { layers.index.set(Int(first), Int(last - first), to: LayerIndex.none) }
    }

    public func flush() async throws(WireStatus) {
        do {
            try await data.flush()
            for m in maps.values { try await m.sync(loop: loop) }
            try await intent.sync(loop: loop)
        } catch {
            errors += 1
            logger.error("flush: \(error)")
            throw .ioError
        }
    }

    private func persistMaps() async throws(WireStatus) {
        if intent.needsPersist { try await persist(intent) }
        for m in maps.values where m.needsPersist { try await persist(m) }
    }

    private func persist(_ m: DirtyMap) async throws(WireStatus) {
        do { try await m.persistPending(loop: loop) } catch {
            errors += 1
            logger.error("\(m === intent ? "write-intent map" : "dirty map for \(m.member)"): \(error)")
            throw error == .noSpace ? .noSpace : .ioError
        }
    }

    func failed(_ error: BlockStoreError, _ what: String) -> WireStatus {
        errors += 1
        logger.error("\(what): \(error)")
        return error == .noSpace ? .noSpace : .ioError
    }

    /// Persists a new membership: map files first (durable), then the metadata that names them.
    public func setMembership(_ u: MembershipUpdate) async throws(WireStatus) {
        if let r = meta.record, u.record.epoch < r.epoch { throw .staleEpoch }
        // A grow at this epoch: the files first, the size with the record below (one write).
        let growing = try u.size.map { s throws(WireStatus) in try growFiles(to: s) } ?? false
        let newSize = growing ? (u.size ?? meta.size) : meta.size
        var removed: [DirtyMap] = []
        let dropping = u.dropAllMaps ? Set(maps.keys) : Set(u.stopTracking)
        for member in dropping {
            if let m = maps.removeValue(forKey: member) { removed.append(m) }
        }
        for t in u.startTracking where t.member != meta.replicaID {
            if let m = maps[t.member], m.base.same(as: t.base) {
                // Already tracking since that record: add what was in flight.
                for e in t.initialExtents { m.mark(offset: e.offset, length: e.length) }
                do { try await m.persistPending(loop: loop) } catch { throw error == .noSpace ? .noSpace : .ioError }
                continue
            }
            if let old = maps.removeValue(forKey: t.member) { removed.append(old) }
            let file = "dirty-\(t.member)-\(t.base.epoch).map"
            do {
                maps[t.member] = try DirtyMap(creating: directory + "/" + file, member: t.member, base: t.base,
                                              granularity: Self.dirtyGranularity, volumeSize: newSize,
                                              initial: t.initialExtents)
            } catch {
                logger.error("creating dirty map for \(t.member): \(error)")
                throw error == .noSpace ? .noSpace : .ioError
            }
        }
        // The metadata is taken only now, after the awaits above: a merge that finished
        // meanwhile changed the snapshot list, which a copy taken earlier would put back.
        var next = meta
        next.record = u.record
        if growing, let s = u.size { next.grow(to: s) }
        next.maps = maps.values.map { m in
            ReplicaMetadata.MapEntry(member: m.member, base: m.base, granularity: m.granularity,
                                     file: String(m.path.split(separator: "/").last ?? ""))
        }.sorted { $0.member < $1.member }
        do { try next.save(metaPath, directory: directory) } catch {
            logger.error("saving metadata: \(error)")
            throw error == .noSpace ? .noSpace : .ioError
        }
        if growing { grown(next) } else { meta = next }
        for m in removed where !maps.values.contains(where: { $0.path == m.path }) { unlink(m.path) }
        logger.notice("membership: \(u.record)\(maps.isEmpty ? "" : "; tracking \(maps.keys.sorted().joined(separator: ","))")")
    }

    /// Grows the volume here to `newSize` (a multiple of 512, never smaller) for a controller
    /// that is about to write past the old end; a member grows at a new epoch instead (a
    /// `MembershipUpdate` with a size). Served inline: no later frame of the connection is
    /// admitted before it is done.
    public func resize(to newSize: UInt64, epoch: UInt64) throws(WireStatus) {
        try checkEpoch(epoch)
        guard try growFiles(to: newSize) else { return }
        var next = meta
        next.grow(to: newSize)
        do { try next.save(metaPath, directory: directory) } catch {
            errors += 1
            logger.error("saving metadata: \(error)")
            throw error == .noSpace ? .noSpace : .ioError
        }
        grown(next)
    }

    /// The first half of a grow: the data file, then the map files, each durable; the metadata
    /// that names the new size is written after, so a crash midway leaves the old size (see
    /// `init`). Returns false when the volume is that size already.
    private func growFiles(to newSize: UInt64) throws(WireStatus) -> Bool {
        guard newSize >= meta.size, newSize % Self.alignment == 0 else {
            logger.warning("resize to \(newSize) bytes refused: this replica holds \(meta.size) (a volume grows, in multiples of 512)")
            throw .badRequest
        }
        guard newSize > meta.size else { return false }
        do { try data.grow(to: newSize) } catch { throw failed(error, "grow to \(newSize)") }
        layers.index.grow(volumeSize: newSize)
        do {
            try intent.grow(volumeSize: newSize)
            for m in maps.values { try m.grow(volumeSize: newSize) }
        } catch {
            errors += 1
            logger.error("grow to \(newSize): \(error)")
            throw error == .noSpace ? .noSpace : .ioError
        }
        return true
    }

    /// The second half: `next`, with the new size, is persisted.
    private func grown(_ next: ReplicaMetadata) {
        logger.notice("grown from \(meta.size) to \(next.size) bytes")
        meta = next
        size = next.size
    }

    /// Forgets the record and the data before a full copy. The record goes first: a crash midway
    /// leaves a replica that says it has nothing worth serving.
    public func wipe() async throws(WireStatus) {
        await stopMerges()
        var next = meta
        next.record = nil
        next.maps = []
        next.snapshots = nil
        next.headParent = nil
        do { try next.save(metaPath, directory: directory) } catch { throw .ioError }
        let dropped = meta.snapshotList
        meta = next
        await dropLayers(dropped)
        for m in maps.values { unlink(m.path) }
        maps = [:]
        intent.clearAll()
        try await persistIntent()
        do {
            try await data.unmap(lba: 0, count: meta.size / 512)
            try await data.flush()
        } catch {
            throw failed(error, "wipe")
        }
        logger.notice("wiped for a full rebuild")
    }

    public var intentBitmap: RegionBitmap { intent.bitmap }

    /// Unmarks settled regions; called as the request arrives (in order with the writes around
    /// it: a write sent after the settle marks its region again). `persistIntent` writes it out.
    public func settle(_ bits: RegionBitmap) throws(WireStatus) {
        guard bits.regions <= intent.regions, bits.granularity == intent.granularity else { throw .badRequest }
        // A controller's map from before a grow covers the regions it had then.
        intent.clear(bits.grown(toRegions: intent.regions))
    }

    public func persistIntent() async throws(WireStatus) {
        try await persist(intent)
    }

    public func dirtyExtents(_ q: DirtyQuery) -> ExtentList {
        guard let m = maps[q.member], m.base.same(as: q.base) else { return ExtentList(extents: [], found: false) }
        return ExtentList(extents: m.extents(volumeSize: meta.size))
    }

    /// Allocated extents in [offset, offset+length) of the volume (what GET LBA STATUS reports),
    /// or of one layer (what a rebuild copies into it).
    public func allocatedExtents(offset: UInt64, length: UInt64,
                                 layer: UInt32 = LayerSelector.view) throws(WireStatus) -> ExtentList {
        try checkRange(offset, length)
        return ExtentList(extents: try allocated(offset: offset, length: length, layer: layer))
    }

    /// Cheap (one fstat): the controller asks for it while new writes wait for a rebuilt replica
    /// to turn RW, so it must not walk the file's extents.
    public func status() -> ReplicaStatus {
        let allocated = min(data.allocatedBytes, meta.size)
        return ReplicaStatus(replicaID: meta.replicaID, volume: meta.volume, size: meta.size, record: meta.record,
                             dirtyMaps: dirtyMapInfos, allocatedBytes: allocated, reads: reads, writes: writes,
                             rebuildBytesWritten: rebuildBytesWritten, intentRegions: intent.dirtyRegions)
    }

    public func close() async {
        await stopMerges()
        await dropSpareHead()
        for e in meta.snapshotList {
            if let s = layers.slotOf[e.id], let f = layers.file(s) { await f.close() }
        }
        await data.close()
    }
}

/// Why a replica refused a handshake, as /metrics labels it.
public enum HandshakeRefusal: String, Sendable, CaseIterable {
    /// No proof of the volume's secret, a wrong one, or one offered to a replica without a secret.
    case unauthorized
    /// Another volume, or a size this replica cannot serve.
    case wrongVolume = "wrong_volume"
    /// Another protocol version.
    case version
    case other
}

/// `mkdir -p`: creates `path` and any missing parent.
func makeDirectories(_ path: String) throws(ReplicaError) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw .io("mkdir \(prefix): \(errnoText())") }
        prefix += "/"
    }
}
