import CairnBlock
import CairnIO
import CairnWire
import Glibc
import Logging

public struct VolumeConfig: Sendable {
    public var name: String
    public var size: UInt64
    public var blockSize: Int
    public var replicas: [ReplicaAddress]
    /// Writes are acknowledged only while at least this many replicas are RW (invariant 5).
    public var minHealthy: Int
    /// A replica that leaves a request unanswered this long is ejected (invariant 6).
    public var replicaTimeoutNanos: UInt64
    public var rebuildBytesPerSecond: UInt64
    public var reconnectIntervalNanos: UInt64 = 500_000_000
    public var rebuildChunkBytes: Int = 256 << 10
    public var rebuildChunksInFlight: Int = 4
    /// A region idle for one to two of these, with nothing in flight, is settled on the replicas
    /// (see Volume+Intent.swift).
    public var settleIntervalNanos: UInt64 = 10_000_000_000
    /// The volume's secret: every replica link proves it both ways (nil: links are not authenticated).
    public var secret: ReplicaSecret?
    /// A new volume's data (a clone's snapshot, a backup), copied before it first serves.
    public var populator: (any VolumePopulator)?
    /// A test hook, off (0) unless CAIRN_TEST_WRITE_DELAY_US is set: a busy wait this long on the
    /// loop for every replicated write, a deliberately slower build for the perf gate's own test.
    public var testWriteDelayNanos: UInt64 = 0

    public init(name: String, size: UInt64, blockSize: Int, replicas: [ReplicaAddress], minHealthy: Int? = nil,
                replicaTimeoutNanos: UInt64 = 5_000_000_000, rebuildBytesPerSecond: UInt64 = 64 << 20) {
        self.name = name
        self.size = size
        self.blockSize = blockSize
        self.replicas = replicas
        self.minHealthy = minHealthy ?? (replicas.count / 2 + 1)
        self.replicaTimeoutNanos = replicaTimeoutNanos
        self.rebuildBytesPerSecond = rebuildBytesPerSecond
    }
}

public enum VolumeError: Error, Equatable, CustomStringConvertible {
    case notFound(String)
    case conflict(String)
    /// The request itself is wrong (a size that is not a block multiple).
    case invalid(String)

    public var description: String {
        switch self {
        case .notFound(let s), .conflict(let s), .invalid(let s): return s
        }
    }
}

/// One replica slot of the volume, owned by the `Volume` actor.
final class Member {
    let key: Int
    let address: ReplicaAddress
    var link: ReplicaLink?
    var hello: HelloReply?
    var id: String?
    var mode: ReplicaMode = .err
    var lastError: String?
    /// The newest record this replica acknowledged persisting (the base of its dirty maps).
    var persisted: EpochRecord?
    var rebuild: RebuildProgress?
    var rebuildJob: RebuildJob?
    var removed = false
    /// The volume size the replica holds (its hello, then each grow it acknowledged).
    var size: UInt64 = 0

    init(key: Int, address: ReplicaAddress) {
        self.key = key
        self.address = address
    }

    var isUp: Bool { link?.isUp == true }
}

/// The controller's side of a replicated volume: the replica set, write fan-out in one order,
/// quorum, ejection, versioned membership (epochs), read balancing, and rebuilds. Pinned to the
/// event loop; replica links are loop-confined, so a write is queued on every link within one
/// actor turn, with no suspension per replica.
public actor Volume {
    public nonisolated let config: VolumeConfig
    public nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    var logger: Logger
    var members: [Member] = []
    var nextKey = 0
    /// The newest membership persisted on the RW set, and the newest one sent (>= record).
    var record: EpochRecord?
    var issued: EpochRecord?
    var changesInFlight = 0
    var settleWaiters: [CheckedContinuation<Void, Never>] = []
    var decided = false
    var deciding = false
    var locks = RangeLock()
    var spareFanOuts: [FanOut] = []
    var gateClosed = false
    var gateWaiters: [CheckedContinuation<Void, Never>] = []
    var counters = VolumeCounters()
    /// Regions written since the last settle tick, and regions waiting for a tick to settle them.
    var written: RegionBitmap
    var settling: RegionBitmap
    var resync: Resync?
    var lastResync: RebuildProgress?
    /// Replicas this controller took out of the RW set: what they lack is all in the others'
    /// dirty maps (the writes in flight included), so a delta need not copy their own
    /// write-intent regions. Any other returning replica may have been left one side of a write
    /// by a controller that crashed, and only its own map says where.
    var ejectedHere: Set<String> = []
    let startedAt = monotonicNanos()
    var stopping = false
    /// Replicas that must answer before the volume serves: enough to meet every membership ever
    /// persisted (each has at least minHealthy members), so the newest record is among them.
    let startQuorum: Int
    var bs: UInt64 { UInt64(config.blockSize) }
    /// The size every RW replica holds, which the volume serves. `desiredSize` is what it was
    /// asked to be (the command line, or a grow): larger while a grow is under way, and a
    /// replica that comes back smaller is grown to it before it is rebuilt.
    public internal(set) var size: UInt64
    var desiredSize: UInt64
    var resizing = false
    /// A snapshot create, delete or revert is under way (one at a time).
    var snapshotBusy = false
    /// A new volume's copy from its populator: under way or done, and why it last failed.
    var populate: RebuildProgress?
    var populateError: String?
    /// Backup jobs, running and the last finished ones.
    var backupProgress: [String: BackupProgress] = [:]
    /// Told the new size each time it changes (the SCSI layer: READ CAPACITY, the unit attention).
    var capacityObserver: (@Sendable (UInt64) async -> Void)?

    public init(config: VolumeConfig, loop: EventLoop, logger: Logger) {
        precondition(!config.replicas.isEmpty && config.minHealthy >= 1 && config.minHealthy <= config.replicas.count)
        self.config = config
        self.loop = loop
        self.logger = logger
        startQuorum = config.replicas.count - config.minHealthy + 1
        size = config.size
        desiredSize = config.size
        written = RegionBitmap(volumeSize: config.size)
        settling = RegionBitmap(volumeSize: config.size)
    }

    /// Starts connecting to every replica; the volume serves once enough have answered.
    public func start() {
        for a in config.replicas { _ = addMember(a) }
    }

    func member(_ key: Int) -> Member? { members.first { $0.key == key } }

    @discardableResult
    func addMember(_ address: ReplicaAddress) -> Int {
        let m = Member(key: nextKey, address: address)
        nextKey += 1
        members.append(m)
        let key = m.key
        loop.spawn { await self.connectLoop(key) }
        return key
    }

    var rwMembers: [Member] { members.filter { $0.mode == .rw && $0.isUp } }
    /// How many RW members are up, without building the list (every write asks).
    var rwCount: Int {
        var n = 0
        for m in members where m.mode == .rw && m.isUp { n += 1 }
        return n
    }

    public var state: VolumeState {
        guard decided else { return .offline }
        let rw = rwCount
        if rw == 0 { return .offline }
        if rw < config.minHealthy { return .readOnly }
        return rw == members.count ? .healthy : .degraded
    }

    // MARK: - Connections

    func connectLoop(_ key: Int) async {
        var lastLogged: String?
        // A replica that refuses the handshake will refuse the next one too, until an operator
        // fixes its directory or our arguments: it is retried less often each time (down to one
        // try in 16 intervals), so neither log fills up. One that is down or silent is retried
        // at the interval, so it rejoins as soon as it is back.
        var refusals = 0
        while !stopping, let m = member(key), !m.removed {
            if m.link == nil {
                let link = ReplicaLink(loop: loop, address: m.address, timeout: config.replicaTimeoutNanos, logger: logger)
                let hello = Hello(volume: config.name, size: desiredSize, blockSize: config.blockSize, epoch: issued?.epoch ?? 0)
                do {
                    let reply = try await link.connect(hello, secret: config.secret)
                    link.onDown = { [loop] l, reason in loop.spawn { await self.linkDown(key, l, reason) } }
                    linkUp(key, link, reply)
                    lastLogged = nil
                    refusals = 0
                } catch {
                    if case .refused = error { refusals += 1 } else { refusals = 0 }
                    let why = "\(error)"
                    m.lastError = why
                    if why != lastLogged { logger.notice("replica \(m.address) not reachable: \(why)") }
                    lastLogged = why
                }
            }
            // 1, 1, 2, 4, 8, 16 times the interval after 0, 1, 2, 3, 4, 5 or more refusals in a row.
            let backoff = UInt64(max(0, min(refusals, 5) - 1))
            await loop.sleep(nanoseconds: config.reconnectIntervalNanos << backoff)
        }
    }

    func linkUp(_ key: Int, _ link: ReplicaLink, _ reply: HelloReply) {
        guard let m = member(key), !m.removed, !stopping else { link.close(); return }
        if members.contains(where: { $0 !== m && $0.id == reply.replicaID && $0.isUp }) {
            m.lastError = "replica \(reply.replicaID) is already connected through another address"
            logger.error("\(m.lastError!)")
            link.close()
            return
        }
        m.link = link
        m.hello = reply
        m.size = reply.size
        m.id = reply.replicaID
        m.persisted = reply.record
        m.lastError = nil
        m.mode = .err
        logger.info("replica connected", metadata: ["replica": "\(reply.replicaID)@\(m.address)",
                                                    "record": "\(reply.record.map { "\($0)" } ?? "none")"])
        if decided {
            startRebuild(m)
        } else {
            loop.spawn { await self.decide() }
        }
    }

    func linkDown(_ key: Int, _ link: ReplicaLink, _ reason: String) async {
        guard let m = member(key), m.link === link else { return }
        m.lastError = reason
        await eject(m, reason)
        if m.link === link { m.link = nil }
    }

    // MARK: - Start-up: which replicas hold the newest data

    func decide() async {
        guard !decided, !deciding, !stopping else { return }
        let connected = members.filter { $0.isUp && $0.hello != nil }
        guard connected.count >= startQuorum else {
            logger.notice("offline: \(connected.count) of \(members.count) replicas answered; \(startQuorum) needed to know the newest data")
            return
        }
        // Give the others a moment at start-up: serving from a quorum now would send the rest
        // through a rebuild they do not need.
        let grace = 2 * config.reconnectIntervalNanos
        if connected.count < members.count && monotonicNanos() &- startedAt < grace {
            loop.spawn {
                await self.loop.sleep(nanoseconds: grace)
                await self.decide()
            }
            return
        }
        deciding = true
        defer { deciding = false }
        let records = connected.compactMap { $0.hello?.record }
        if records.isEmpty {
            // No replica has ever held data of this volume: a new volume, first filled from its
            // populator (a clone, a restore) when it has one.
            var connected = connected
            if let p = config.populator {
                guard let filled = await populateAll(p, connected) else { return }
                connected = filled
            }
            let ids = connected.compactMap(\.id).sorted()
            let first = EpochRecord(epoch: 1, membershipID: Self.randomID(), members: ids)
            logger.notice("new volume: \(first)")
            for m in connected { m.mode = .rw }
            decided = true
            startSettleTicks()
            await change(first, connected.map { ($0, MembershipUpdate(record: first)) })
            for m in members where m.mode == .err && m.isUp { startRebuild(m) }
            return
        }
        let newest = records.max { ($0.epoch, $0.membershipID) < ($1.epoch, $1.membershipID) }!
        func holdsNewest(_ m: Member) -> Bool {
            guard m.isUp, let id = m.id, let r = m.hello?.record else { return false }
            return r.same(as: newest) && newest.members.contains(id)
        }
        // Where the newest replicas may differ (writes the last controller left half-done).
        let newestHolders = connected.filter(holdsNewest)
        let suspect = await intentUnion(newestHolders, epoch: newest.epoch)
        let current = newestHolders.filter(holdsNewest)  // those still up after the queries
        guard !current.isEmpty else {
            logger.warning("offline: no connected replica holds the newest record \(newest)")
            return
        }
        record = newest
        issued = newest
        // The holders of one record hold one size (a grow is persisted with its record).
        let held = current.map(\.size).min() ?? size
        if held != size {
            logger.notice("the replicas hold \(held) bytes; serving that\(desiredSize > held ? ", then growing to \(desiredSize)" : "")")
            setSize(held)
        }
        for m in current { m.mode = .rw }
        // Before the first read is served: reads of regions not resynced yet go to its source.
        if !suspect.isEmpty {
            if current.count > 1 { startResync(suspect) } else { settleLater(suspect) }
        }
        decided = true
        logger.notice("serving from \(current.compactMap(\.id).joined(separator: ",")) at \(newest)")
        if current.count >= config.minHealthy {
            // A new epoch fences any older controller, and records who is absent.
            let ids = current.compactMap(\.id).sorted()
            let absent = newest.members.filter { !ids.contains($0) }
            let next = EpochRecord(epoch: newest.epoch + 1, membershipID: Self.randomID(), members: ids)
            // An absent member may hold either side of a half-done write too.
            let initial = suspect.extents(volumeSize: size, maxCount: Self.maxTrackedExtents)
            let track = absent.map { TrackRequest(member: $0, base: newest, initialExtents: initial) }
            await change(next, current.map { ($0, MembershipUpdate(record: next, startTracking: track)) })
        } else {
            logger.warning("read-only: \(current.count) replica(s) hold the newest data; \(config.minHealthy) needed for writes")
        }
        // A snapshot change a dead controller left half-done, undone: after the new epoch, so
        // nothing the dead one sent can still land after this looked.
        await reconcileSnapshots(current.filter { $0.mode == .rw && $0.isUp })
        startSettleTicks()
        for m in connected where m.mode == .err { startRebuild(m) }
        // Told last: a suspension here cannot interleave with the switch to serving.
        if size != config.size { await capacityObserver?(size) }
        if desiredSize > size {
            // Given larger on the command line: grown now, as through the API.
            let to = desiredSize
            loop.spawn { await self.growAtStart(to) }
        }
    }

    static func randomID() -> UInt64 {
        var g = SystemRandomNumberGenerator()
        return UInt64.random(in: 1...UInt64.max, using: &g)
    }

    // MARK: - Membership changes (invariant 4)

    /// Sends `next` to each replica in `updates` at once (in this actor turn, so every frame sent
    /// later on those links is ordered after it), waits for them to persist it, and ejects the
    /// replicas that could not. Writes are acknowledged only when no change is in flight.
    @discardableResult
    func change(_ next: EpochRecord, _ updates: [(Member, MembershipUpdate)]) async -> Bool {
        if let i = issued, (next.epoch, next.membershipID) != (i.epoch, i.membershipID), next.epoch < i.epoch {
            logger.error("membership change to \(next) is older than \(i): skipped")
            return false
        }
        issued = next
        changesInFlight += 1
        counters.membershipChanges += 1
        let f = FanOut(count: updates.count)
        for (i, (m, u)) in updates.enumerated() {
            guard let link = m.link, link.isUp else { f.complete(i, .unavailable); continue }
            link.send(OutFrame(WireHeader(opcode: .setMembership, seq: 0, epoch: next.epoch), control: WireJSON.encode(u)),
                      fan: f, slot: i)
        }
        await f.wait()
        var failed: [Member] = []
        for (i, (m, _)) in updates.enumerated() {
            if f.results[i] == .ok { m.persisted = next } else { failed.append(m) }
        }
        if let r = record, next.epoch < r.epoch {} else { record = next }
        changesInFlight -= 1
        if changesInFlight == 0 {
            let w = settleWaiters
            settleWaiters = []
            for c in w { c.resume() }
        }
        logger.notice("membership \(next) persisted on \(updates.count - failed.count) of \(updates.count)")
        for m in failed { await eject(m, "could not persist membership \(next)") }
        return failed.isEmpty
    }

    /// Waits until every membership change sent so far is persisted.
    func settled() async {
        while changesInFlight > 0 {
            await withCheckedContinuation { c in if changesInFlight == 0 { c.resume() } else { settleWaiters.append(c) } }
        }
    }

    /// Takes a replica out of the set. An RW replica's absence starts a new epoch on the others,
    /// which track (persistently) every region it misses, starting with the writes in flight.
    func eject(_ m: Member, _ reason: String) async {
        switch m.mode {
        case .err:
            return
        case .wo:
            m.mode = .err
            counters.ejections += 1
            logger.warning("rebuild of \(m.id ?? "?") stopped: \(reason)")
            m.rebuildJob?.cancel()
            m.rebuildJob = nil
            m.link?.close()
            return
        case .rw:
            break
        }
        m.mode = .err
        counters.ejections += 1
        logger.warning("ejecting replica \(m.id ?? "?")@\(m.address): \(reason)")
        m.link?.close()
        guard let id = m.id, let current = issued ?? record else { return }
        ejectedHere.insert(id)
        // Everything in flight may have missed it: held ranges are exactly the writes in flight.
        var inflight = locks.held.map { Extent(offset: $0.lba * bs, length: ($0.end - $0.lba) * bs) }
        if let r = resync {
            // Not resynced yet: it may hold the other side of a half-done write there.
            inflight += r.pending.extents(volumeSize: size, maxCount: Self.maxTrackedExtents)
            resyncSourceLost(m)
        }
        let base = m.persisted ?? current
        let remaining = rwMembers
        let track = TrackRequest(member: id, base: base, initialExtents: inflight)
        let next: EpochRecord
        if remaining.count >= config.minHealthy {
            next = EpochRecord(epoch: current.epoch + 1, membershipID: Self.randomID(), members: remaining.compactMap(\.id).sorted())
        } else {
            // Below quorum no new membership is persisted (it would be smaller than any quorum
            // can see at start-up); the survivors still track what the ejected one misses.
            next = current
            logger.error("below quorum: \(remaining.count) RW of \(config.minHealthy) needed; writes fail until a rebuild")
        }
        await change(next, remaining.map { ($0, MembershipUpdate(record: next, startTracking: [track])) })
    }

    // MARK: - Write gate (the switch of a rebuilt replica to RW)

    func waitForGate() async {
        while gateClosed {
            await withCheckedContinuation { c in if !gateClosed { c.resume() } else { gateWaiters.append(c) } }
        }
    }

    func openGate() {
        gateClosed = false
        let w = gateWaiters
        gateWaiters = []
        for c in w { c.resume() }
    }

    func lockRange(lba: UInt64, count: UInt64) async -> UInt64 {
        let r = locks.tryAcquire(lba: lba, count: count, exclusive: true)
        if r.granted { return r.id }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in locks.enqueue(r.entry, c) }
        return r.id
    }

    func unlockRange(_ id: UInt64) {
        locks.release(id)
        if locks.isIdle, !drainWaiters.isEmpty {
            let w = drainWaiters
            drainWaiters = []
            for c in w { c.resume() }
        }
    }

    var drainWaiters: [CheckedContinuation<Void, Never>] = []

    func waitForDrain() async {
        while !locks.isIdle {
            await withCheckedContinuation { c in if locks.isIdle { c.resume() } else { drainWaiters.append(c) } }
        }
    }

    // MARK: - Changing the set (API)

    /// Adds a replica: it connects, joins write-only, is rebuilt, and turns RW.
    public func addReplica(_ address: ReplicaAddress) throws(VolumeError) {
        guard !members.contains(where: { $0.address == address }) else { throw .conflict("\(address) is already in the set") }
        addMember(address)
        logger.notice("replica \(address) added")
    }

    /// Removes a replica (by id or address) for good: it is ejected, no longer reconnected, and
    /// the others stop tracking it.
    public func removeReplica(_ idOrAddress: String) async throws(VolumeError) {
        guard let m = members.first(where: { $0.id == idOrAddress || "\($0.address)" == idOrAddress }) else {
            throw .notFound("no replica \(idOrAddress)")
        }
        if m.mode == .rw && rwCount <= config.minHealthy {
            throw .conflict("removing \(idOrAddress) would leave fewer than \(config.minHealthy) RW replicas")
        }
        m.removed = true
        await eject(m, "removed through the API")
        m.link?.onDown = nil
        m.link?.close()
        members.removeAll { $0 === m }
        if let id = m.id, let current = issued ?? record, rwCount > 0 {
            await change(current, rwMembers.map { ($0, MembershipUpdate(record: current, stopTracking: [id])) })
        }
        logger.notice("replica \(idOrAddress) removed")
    }

    // MARK: - Shutdown

    public func close() async {
        stopping = true
        await waitForDrain()
        if rwCount > 0 { try? await flush() }
        await settleAll()
        for m in members {
            m.rebuildJob?.cancel()
            m.link?.onDown = nil
            m.link?.close()
        }
    }
}
