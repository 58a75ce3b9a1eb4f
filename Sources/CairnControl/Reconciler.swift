import CairnClient
import Foundation
@_implementationOnly import GRDB
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The reconcile loop: reads the desired state, makes the running world match it, and folds what
/// each volume's controller reports into the volume's status. Every step is idempotent and reads
/// what it needs afresh, so the loop can stop at any line (the apiserver killed) and the next
/// apiserver's loop takes over from the state store and the processes it adopts.
///
/// One owner per thing: the reconciler alone starts and stops processes, places replacements and
/// talks to controllers; API handlers only write specs and wake it.
actor Reconciler {
    struct LiveVolume {
        /// The controller's last answer, and when (monotonic seconds); nil once it stops answering.
        var view: ControllerView?
        var viewAt: Double = 0
        var everAnswered = false
        var processes: [String: ProcessStatus] = [:]
        var message: String?
        /// The spec generation whose QoS and size the controller has.
        var pushedGeneration = 0
    }

    private let store: StateStore
    private let orchestrator: any Orchestrator
    private let events: EventLog
    private let config: ControlConfig
    private let logger: Logger
    private var live: [String: LiveVolume] = [:]
    private var clients: [String: ControllerClient] = [:]
    /// The loop's sleep between passes, which `wake()` ends early.
    private var sleeper: CheckedContinuation<Void, Never>?
    private var sleepGeneration = 0
    private var wakePending = false
    /// Set once processes were adopted and the first pass ran: `/readyz`.
    private(set) var ready = false
    private(set) var passes: UInt64 = 0
    private(set) var lastPassSeconds: Double = 0

    init(store: StateStore, orchestrator: any Orchestrator, events: EventLog, config: ControlConfig, logger: Logger) {
        self.store = store
        self.orchestrator = orchestrator
        self.events = events
        self.config = config
        self.logger = logger
    }

    /// Runs the loop until the task is cancelled: adoption first, then a pass every tick or at
    /// once when woken.
    func run() async {
        for change in await orchestrator.adopt() {
            if case .adopted(let key, let pid) = change {
                events.record("process.adopted", volume: key.split(separator: "/").first.map(String.init),
                              "adopted \(key) (pid \(pid)), still running from the previous apiserver")
            }
        }
        let tick = UInt64(config.tickSeconds * 1e9), idleTick = UInt64(config.idleTickSeconds * 1e9)
        while !Task.isCancelled {
            let t0 = Monotonic.seconds()
            let settled = await pass()
            lastPassSeconds = Monotonic.seconds() - t0
            passes += 1
            ready = true
            await sleep(nanoseconds: settled ? idleTick : tick)
        }
    }

    /// Sleeps a tick, or less when woken (a wake during the pass ends the next sleep at once).
    private func sleep(nanoseconds: UInt64) async {
        if wakePending {
            wakePending = false
            return
        }
        sleepGeneration += 1
        let generation = sleepGeneration
        await withCheckedContinuation { c in
            sleeper = c
            Task {
                try? await Task.sleep(nanoseconds: nanoseconds)
                await self.endSleep(generation)
            }
        }
    }

    private func endSleep(_ generation: Int) {
        guard generation == sleepGeneration, let s = sleeper else { return }
        sleeper = nil
        s.resume()
    }

    private func wakeNow() {
        if let s = sleeper {
            sleeper = nil
            s.resume()
        } else {
            wakePending = true
        }
    }

    /// Runs a pass soon (a spec changed).
    nonisolated func wake() { Task { await self.wakeNow() } }

    // MARK: - One pass

    /// One pass over every volume; returns whether all of them are settled (nothing to wait for).
    @discardableResult
    func pass() async -> Bool {
        let volumes: [VolumeRecord], replicas: [ReplicaRecord]
        do {
            volumes = try store.volumes()
            replicas = try store.replicas()
        } catch {
            logger.error("reconcile: cannot read the state store: \(error)")
            return false
        }
        // Processes of volumes (or replicas) that are no longer wanted: stop them.
        var wanted = Set<String>()
        for v in volumes where !v.deleting { wanted.insert(ProcessKey.controller(v.name)) }
        for r in replicas { wanted.insert(ProcessKey.replica(r)) }
        let deleting = Set(volumes.filter(\.deleting).map(\.name))
        for key in await orchestrator.keys() where !wanted.contains(key) {
            let volume = String(key.split(separator: "/").first ?? "")
            if deleting.contains(volume) { continue }  // `remove` stops them in order
            logger.notice("stopping \(key): no longer wanted")
            await orchestrator.stop(key, graceSeconds: 10)
        }
        let byVolume = Dictionary(grouping: replicas, by: \.volume)
        let settled = await withTaskGroup(of: Bool.self) { group in
            for v in volumes {
                group.addTask { await self.reconcile(v, byVolume[v.name] ?? []) }
            }
            var all = true
            for await one in group where !one { all = false }
            return all
        }
        for name in live.keys where !volumes.contains(where: { $0.name == name }) {
            live[name] = nil
            if let c = clients.removeValue(forKey: name) { await c.shutdown() }
        }
        return settled
    }

    func client(_ v: VolumeRecord) -> ControllerClient {
        if let c = clients[v.name] { return c }
        let c = ControllerClient(baseURL: config.controllerAPI(v))
        clients[v.name] = c
        return c
    }

    /// Reconciles one volume; returns whether it is settled: healthy, every replica active, its
    /// spec applied, every process running.
    private func reconcile(_ v: VolumeRecord, _ initial: [ReplicaRecord]) async -> Bool {
        if v.deleting {
            await remove(v, initial)
            return false
        }
        var replicas = initial
        do {
            try ensureSecret(v)
            if try markReplacements(v, replicas) || (try placeReplacements(v, replicas)) {
                replicas = try store.replicas(of: v.name)
            }
        } catch {
            logger.error("reconcile \(v.name): \(error)")
        }
        await runProcesses(v, replicas)
        await poll(v, replicas)
        await alignReplicaSet(v, replicas)
        await finishReplacements(v, replicas)
        await pushSpec(v)
        guard let l = live[v.name] else { return false }
        return l.view?.volume.state == "healthy" && replicas.allSatisfy { $0.role == "active" }
            && l.pushedGeneration == v.generation && l.processes.values.allSatisfy(\.running)
    }

    // MARK: - Processes

    private func runProcesses(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async {
        var specs = replicas.map { replicaSpec(v, $0) }
        specs.append(controllerSpec(v, replicas))
        let (status, changes) = await orchestrator.ensure(specs)
        var l = live[v.name] ?? LiveVolume()
        l.processes = Dictionary(uniqueKeysWithValues: status.map { ($0.key, $0) })
        live[v.name] = l
        for change in changes {
            if case .restarted(let key, let pid, let after, let restarts) = change {
                live[v.name]?.viewAt = 0  // ask the controller again at once: what it said is old now
                events.record("process.restarted", volume: v.name, replica: replicaID(key),
                              "\(key) \(after); restarted as pid \(pid) (restart \(restarts))")
            }
        }
    }

    private func replicaID(_ key: String) -> String? {
        let parts = key.split(separator: "/")
        return parts.count == 3 ? String(parts[2]) : nil
    }

    func replicaSpec(_ v: VolumeRecord, _ r: ReplicaRecord) -> ProcessSpec { config.replicaSpec(v, r) }

    func controllerSpec(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) -> ProcessSpec { config.controllerSpec(v, replicas) }

    /// The volume's secret (32 random bytes, hex), made once, mode 0600.
    private func ensureSecret(_ v: VolumeRecord) throws {
        let path = config.secretFile(v.name)
        try FileManager.default.createDirectory(atPath: config.volumeDir(v.name), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { try RandomSecret.create(at: path) }
        // A clone keeps its own copy of the source's secret: the source may go once it is copied.
        if let s = v.cloneSource, !FileManager.default.fileExists(atPath: config.cloneSecretFile(v.name)) {
            try RandomSecret.copy(from: config.secretFile(s.volume), to: config.cloneSecretFile(v.name))
        }
    }

    /// Whether the volume's controller ever said it serves (a clone's copy is done then).
    func hasServed(_ name: String) -> Bool {
        (live[name]?.view?.volume.epoch ?? 0) > 0
    }

    // MARK: - The controller's view

    private func poll(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async {
        var l = live[v.name] ?? LiveVolume()
        let now = Monotonic.seconds()
        let settled = l.view?.volume.state == "healthy" && replicas.allSatisfy { $0.role == "active" }
            && l.pushedGeneration == v.generation
        if settled && now - l.viewAt < config.pollSeconds { return }
        if !settled && now - l.viewAt < min(0.5, config.pollSeconds) { return }
        let controllerUp = l.processes[ProcessKey.controller(v.name)]?.running ?? false
        var view: ControllerView?
        if controllerUp { view = try? await client(v).view() }
        l = live[v.name] ?? l
        if let view {
            noteChanges(v, old: l.view, new: view, replicas: replicas)
            l.everAnswered = true
        }
        l.view = view
        l.viewAt = now
        live[v.name] = l
    }

    /// Events for what changed between two answers of a controller.
    private func noteChanges(_ v: VolumeRecord, old: ControllerView?, new: ControllerView, replicas: [ReplicaRecord]) {
        guard let old else { return }
        if old.volume.state != new.volume.state {
            events.record("volume.state-changed", volume: v.name, "\(old.volume.state) -> \(new.volume.state)")
        }
        for r in new.replicas {
            let id = replicas.first { config.replicaAddress($0) == r.address }?.id
            let before = old.replica(at: r.address)
            if before?.mode == "RW" && r.mode == "ERR" {
                events.record("replica.ejected", volume: v.name, replica: id, "replica \(id ?? r.address) (\(r.address)) left the healthy set")
            }
            // A rebuild may start and finish between two polls: both events then come together.
            if let rb = r.rebuild {
                let was = before?.rebuild
                if was == nil || (was!.finished && !rb.finished) {
                    events.record("rebuild.started", volume: v.name, replica: id,
                                  "\(rb.kind) rebuild of \(id ?? r.address): \(rb.totalBytes) bytes to copy")
                }
                if rb.finished && (was == nil || !was!.finished) {
                    events.record("rebuild.finished", volume: v.name, replica: id,
                                  "\(rb.kind) rebuild of \(id ?? r.address) finished: \(rb.copiedBytes) bytes copied")
                }
            }
        }
    }

    /// Makes the controller's replica set the desired one: adds the replicas it lacks (a new
    /// replacement), removes those no longer placed (finished replacements, after a crash midway).
    private func alignReplicaSet(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async {
        guard let view = live[v.name]?.view else { return }
        let desired = Set(replicas.map { config.replicaAddress($0) })
        let running = Set(view.replicas.map(\.address))
        for address in desired.subtracting(running).sorted() {
            do {
                try await client(v).addReplica(address)
                logger.notice("volume \(v.name): replica \(address) added to the controller's set")
                live[v.name]?.viewAt = 0
            } catch {
                logger.warning("volume \(v.name): cannot add replica \(address): \(error)")
            }
        }
        for address in running.subtracting(desired).sorted() {
            do {
                if try await client(v).removeReplica(address) {
                    logger.notice("volume \(v.name): replica \(address) removed from the controller's set")
                    live[v.name]?.viewAt = 0
                }
            } catch {
                logger.warning("volume \(v.name): cannot remove replica \(address): \(error)")
            }
        }
    }

    /// Pushes a changed spec (QoS, a larger size) to the live controller.
    private func pushSpec(_ v: VolumeRecord) async {
        guard let l = live[v.name], let view = l.view, l.pushedGeneration != v.generation else { return }
        do {
            let c = client(v)
            if view.volume.size < UInt64(v.size) {
                try await c.grow(to: UInt64(v.size))
                events.record("volume.expanded", volume: v.name, "grown to \(v.size) bytes")
            }
            let want = v.qosValue
            let have = try await c.qos()
            if !sameLimits(want, have) {
                try await c.setQoS(want)
                events.record("volume.qos-changed", volume: v.name, "QoS limits set: \(JSONText.encode(want))")
            }
            live[v.name]?.pushedGeneration = v.generation
            live[v.name]?.viewAt = 0
        } catch {
            logger.warning("volume \(v.name): cannot apply its spec to the controller yet: \(error)")
        }
    }

    private func sameLimits(_ a: QoS, _ b: QoS) -> Bool {
        a.iops == b.iops && a.readIops == b.readIops && a.writeIops == b.writeIops && a.bandwidth == b.bandwidth
            && a.readBandwidth == b.readBandwidth && a.writeBandwidth == b.writeBandwidth
            && (a.burstSeconds ?? 1) == (b.burstSeconds ?? 1)
    }

    // MARK: - Replacement

    /// Marks for replacement the replicas on draining pools and those whose process cannot stay up.
    /// Returns whether anything changed.
    private func markReplacements(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) throws -> Bool {
        let pools = Dictionary(uniqueKeysWithValues: try store.pools().map { ($0.name, $0) })
        var changed = false
        for r in replicas where r.role != "replacing" {
            var why: String?
            if pools[r.pool]?.poolState == .draining { why = "its pool \(r.pool) is draining" }
            if live[v.name]?.processes[ProcessKey.replica(r)]?.crashLooping == true {
                why = "its process cannot stay up"
            }
            guard let why else { continue }
            try store.write { db in
                var m = r
                m.role = "replacing"
                try m.update(db)
            }
            events.record("replica.replacing", volume: v.name, replica: r.id, "replacing replica \(r.id): \(why)")
            changed = true
        }
        return changed
    }

    /// Places a new replica for each replica being replaced that has none yet.
    private func placeReplacements(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) throws -> Bool {
        var changed = false
        for old in replicas where old.role == "replacing" && !replicas.contains(where: { $0.replaces == old.id }) {
            let placed = try store.write { db -> ReplicaRecord? in
                let all = try ReplicaRecord.fetchAll(db)
                let mine = all.filter { $0.volume == v.name }
                let pools = try PoolRecord.fetchAll(db)
                let sizes = try VolumeRecord.sizes(db)
                guard let pool = Placement.candidates(pools: pools, replicas: all, sizes: sizes, size: UInt64(v.size),
                                                      selector: v.selector, excluded: Set(mine.map(\.pool)),
                                                      remote: config.poolsAreRemote).first else {
                    return nil
                }
                let port = try Placement.allocatePorts(db, count: 1, range: config.ports, host: config.replicaHost)[0]
                let r = ReplicaRecord.new(volume: v.name, pool: pool, port: port, role: "replacement", replaces: old.id)
                try r.insert(db)
                return r
            }
            if let placed {
                live[v.name]?.message = nil
                events.record("replica.added", volume: v.name, replica: placed.id,
                              "replica \(placed.id) placed on pool \(placed.pool) to replace \(old.id)")
                changed = true
            } else {
                let msg = "no ready pool can take a replacement for replica \(old.id)"
                if live[v.name]?.message != msg {
                    live[v.name, default: LiveVolume()].message = msg
                    events.record("replica.replacement-blocked", volume: v.name, replica: old.id, msg)
                }
            }
        }
        return changed
    }

    /// Retires each replaced replica whose replacement is RW: out of the controller's set (never
    /// below min-healthy: the controller refuses that), process stopped, data removed, row gone.
    private func finishReplacements(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async {
        guard let view = live[v.name]?.view else { return }
        for new in replicas where new.role == "replacement" {
            guard view.replica(at: config.replicaAddress(new))?.mode == "RW" else { continue }
            let old = replicas.first { $0.id == new.replaces }
            do {
                if let old {
                    guard try await client(v).removeReplica(config.replicaAddress(old)) else {
                        logger.notice("volume \(v.name): the controller keeps \(old.id) for now (min-healthy)")
                        continue
                    }
                    await orchestrator.stop(ProcessKey.replica(old), graceSeconds: 10)
                    await orchestrator.removeData(old)
                }
                try store.write { db in
                    if let old { _ = try ReplicaRecord.deleteOne(db, key: old.id) }
                    var n = new
                    n.role = "active"
                    n.replaces = nil
                    try n.update(db)
                }
                live[v.name]?.viewAt = 0
                events.record("replica.replaced", volume: v.name, replica: new.id,
                              "replica \(old?.id ?? "?") replaced by \(new.id) on pool \(new.pool) (rebuilt, RW)")
            } catch {
                logger.warning("volume \(v.name): cannot retire \(old?.id ?? "?") yet: \(error)")
            }
        }
    }

    // MARK: - Delete

    /// Stops the controller, then the replicas; removes their data, the volume's folder and rows.
    private func remove(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async {
        await orchestrator.stop(ProcessKey.controller(v.name), graceSeconds: 15)
        for r in replicas {
            await orchestrator.stop(ProcessKey.replica(r), graceSeconds: 10)
            await orchestrator.removeData(r)
        }
        try? FileManager.default.removeItem(atPath: config.volumeDir(v.name))
        do {
            try store.write { db in
                _ = try VolumeRecord.deleteOne(db, key: v.name)
                try ProcessRecord.filter(Column("volume") == v.name).deleteAll(db)
            }
            live[v.name] = nil
            if let c = clients.removeValue(forKey: v.name) { await c.shutdown() }
            events.record("volume.deleted", volume: v.name, "volume \(v.name) deleted: processes stopped, data removed")
        } catch {
            logger.error("delete \(v.name): \(error)")
        }
    }

    // MARK: - Status

    func status(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) -> VolumeStatus {
        let l = live[v.name]
        var state: String
        if v.deleting { state = "deleting" } else if let view = l?.view { state = view.volume.state } else {
            state = l?.everAnswered == true ? "unreachable" : "pending"
        }
        let reps = replicas.map { r -> Replica in
            let address = config.replicaAddress(r)
            let p = l?.processes[ProcessKey.replica(r)]
            let c = l?.view?.replica(at: address)
            return Replica(id: r.id, volume: r.volume, pool: r.pool, address: address, directory: r.directory,
                           role: r.role, mode: c?.mode, pid: p?.pid, restarts: p?.restarts ?? 0,
                           rebuild: c?.rebuild.map {
                               RebuildStatus(kind: $0.kind, totalBytes: $0.totalBytes, copiedBytes: $0.copiedBytes,
                                             percent: $0.percent, finished: $0.finished)
                           })
        }
        let populate = l?.view?.volume.populate
        var message = l?.message
        if let p = populate, !p.finished {
            state = p.kind == "restore" ? "restoring" : "cloning"
            message = l?.view?.volume.populateError ?? message
        }
        return VolumeStatus(state: state, epoch: l?.view?.volume.epoch, servedSize: l?.view?.volume.size,
                            portal: config.portal(v), iqn: ControlConfig.iqn(v.name), url: config.url(v),
                            controllerAPI: config.controllerAPI(v),
                            controllerPid: l?.processes[ProcessKey.controller(v.name)]?.pid, replicas: reps,
                            message: message, populate: populate.map {
                                RebuildStatus(kind: $0.kind, totalBytes: $0.totalBytes, copiedBytes: $0.copiedBytes,
                                              percent: $0.percent, finished: $0.finished)
                            })
    }

    /// Counts for /metrics: volumes by state, processes running, restarts.
    func summary() -> (states: [String: Int], running: Int, restarts: Int) {
        var states: [String: Int] = [:]
        var running = 0, restarts = 0
        for (_, l) in live {
            states[l.view?.volume.state ?? (l.everAnswered ? "unreachable" : "pending"), default: 0] += 1
            for p in l.processes.values {
                if p.running { running += 1 }
                restarts += p.restarts
            }
        }
        return (states, running, restarts)
    }

    func stats(_ v: VolumeRecord) async throws -> VolumeStats {
        try await client(v).stats()
    }

    /// Stops every process of every volume (controllers first): `cairn apiserver --stop-volumes-on-exit`.
    func stopAll() async {
        let volumes = (try? store.volumes()) ?? []
        for v in volumes { await orchestrator.stop(ProcessKey.controller(v.name), graceSeconds: 15) }
        for key in await orchestrator.keys() { await orchestrator.stop(key, graceSeconds: 10) }
        for c in clients.values { await c.shutdown() }
        clients = [:]
    }
}

extension ReplicaRecord {
    /// A new replica of `volume` on `pool`, its directory POOL/VOLUME/ID.
    static func new(volume: String, pool: PoolRecord, port: Int, role: String, replaces: String? = nil) -> ReplicaRecord {
        let id = "r" + String(format: "%07x", UInt32.random(in: 0...0x0fff_ffff))
        return ReplicaRecord(id: id, volume: volume, pool: pool.name, port: port, directory: "\(pool.path)/\(volume)/\(id)",
                             role: role, replaces: replaces, createdAt: Timestamp.now())
    }
}

enum ControlError: Error, CustomStringConvertible {
    case io(String)

    var description: String {
        switch self {
        case .io(let s): return s
        }
    }
}
