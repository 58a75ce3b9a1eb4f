import CairnClient
import Foundation
@_implementationOnly import GRDB

/// Checks and defaults of volume specs, and the answers they make.
enum VolumeSpec {
    static let maxReplicas = 5
    static let alignment: UInt64 = 4096

    /// A create request made whole (defaults filled in) and checked; throws the 422 to answer.
    static func normalized(_ c: VolumeCreate) throws -> VolumeCreate {
        try Names.check(c.name, what: "volume name")
        var c = c
        try checkSize(c.size)
        let replicas = c.replicas ?? 3
        guard (1...maxReplicas).contains(replicas) else {
            throw APIFailure.invalid("invalid-replicas", "replicas must be 1 to \(maxReplicas), not \(replicas)")
        }
        c.replicas = replicas
        let minHealthy = c.minHealthy ?? (replicas / 2 + 1)
        guard (1...replicas).contains(minHealthy) else {
            throw APIFailure.invalid("invalid-min-healthy", "minHealthy must be 1 to \(replicas) (the replica count), not \(minHealthy)")
        }
        c.minHealthy = minHealthy
        var qos = c.qos ?? QoS()
        try checkQoS(qos)
        if qos.burstSeconds == nil { qos.burstSeconds = 1 }
        c.qos = qos
        c.poolSelector = c.poolSelector ?? [:]
        try Names.checkLabels(c.poolSelector!, what: "poolSelector")
        return c
    }

    static func checkSize(_ size: UInt64) throws {
        guard size > 0, size % alignment == 0 else {
            throw APIFailure.invalid("invalid-size", "size must be a positive multiple of \(alignment) bytes, not \(size)")
        }
        guard size <= 1 << 50 else { throw APIFailure.invalid("invalid-size", "size must be at most 1 PiB") }
    }

    static func checkQoS(_ q: QoS) throws {
        for (name, v) in [("iops", q.iops), ("readIops", q.readIops), ("writeIops", q.writeIops),
                          ("bandwidth", q.bandwidth), ("readBandwidth", q.readBandwidth),
                          ("writeBandwidth", q.writeBandwidth)] where v == 0 {
            throw APIFailure.invalid("invalid-qos", "qos.\(name) must be positive (leave it out for no limit)")
        }
        if let b = q.burstSeconds, !(b.isFinite && b >= 0 && b <= 3600) {
            throw APIFailure.invalid("invalid-qos", "qos.burstSeconds must be between 0 and 3600")
        }
    }

    /// Whether an existing volume has the spec a create asks for (a repeated create answers 200).
    static func matches(_ v: VolumeRecord, _ c: VolumeCreate) -> Bool {
        UInt64(v.size) == c.size && v.replicaCount == c.replicas && v.minHealthy == c.minHealthy
            && v.qosValue == c.qos && v.selector == (c.poolSelector ?? [:])
            && v.cloneSource.map { "\($0.volume)/\($0.snapshot)" } == c.fromSnapshot
            && v.restoreSource?.backup == c.fromBackup
    }

    /// "VOLUME/SNAPSHOT" checked against the state (the caller refreshed the source's snapshot
    /// list just before): the source and its snapshot exist, and the clone is large enough.
    static func cloneSource(_ ref: String, size: UInt64, db: Database, config: ControlConfig) throws -> CloneSource {
        let parts = ref.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw APIFailure.invalid("invalid-source", "fromSnapshot is VOLUME/SNAPSHOT, not \(ref.prefix(200))")
        }
        let (volume, name) = (String(parts[0]), String(parts[1]))
        guard let v = try VolumeRecord.fetchOne(db, key: volume), !v.deleting else {
            throw APIFailure.invalid("source-not-found", "no volume \(volume) to clone from")
        }
        guard let s = try SnapshotRecord.fetchOne(db, key: ["volume": volume, "name": name]), s.state == "ready" else {
            throw APIFailure.invalid("source-not-found", "volume \(volume) has no snapshot \(name)")
        }
        guard size >= UInt64(s.size) else {
            throw APIFailure.invalid("invalid-size", "a clone of \(ref) needs at least \(s.size) bytes (the snapshot's size), not \(size)")
        }
        let from = try ReplicaRecord.filter(Column("volume") == volume).fetchAll(db).map { config.replicaAddress($0) }
        return CloneSource(volume: volume, snapshot: name, snapshotID: s.id, from: from)
    }

    enum Created {
        case created(VolumeRecord)
        case existing(VolumeRecord)
    }

    /// Records a new volume and its replicas' placement in one transaction, or finds the same one.
    static func create(_ c: VolumeCreate, restore: RestoreSource? = nil, store: StateStore, config: ControlConfig) throws -> Created {
        try store.write { db in
            if let existing = try VolumeRecord.fetchOne(db, key: c.name) {
                guard !existing.deleting else {
                    throw APIFailure(.conflict, "volume-deleting", "volume \(c.name) is being deleted")
                }
                guard matches(existing, c) else {
                    throw APIFailure(.conflict, "volume-exists", "volume \(c.name) exists with another spec")
                }
                return .existing(existing)
            }
            let source = try c.fromSnapshot.map { try cloneSource($0, size: c.size, db: db, config: config) }
            let pools = try PoolRecord.fetchAll(db)
            let all = try ReplicaRecord.fetchAll(db)
            let sizes = try VolumeRecord.sizes(db)
            let selector = c.poolSelector ?? [:]
            let ready = pools.filter { p in p.poolState == .ready && selector.allSatisfy { p.labelMap[$0.key] == $0.value } }
            let count = c.replicas ?? 3
            guard ready.count >= count else {
                throw APIFailure.invalid("not-enough-pools", "\(count) replicas need \(count) ready pools\(selector.isEmpty ? "" : " matching the selector"); there are \(ready.count)")
            }
            let fits = Placement.candidates(pools: pools, replicas: all, sizes: sizes, size: c.size, selector: selector,
                                            excluded: [], remote: config.poolsAreRemote)
            guard fits.count >= count else {
                throw APIFailure.invalid("insufficient-capacity", "\(c.size) bytes fit on \(fits.count) ready pool(s) of the \(count) needed")
            }
            let ports = try Placement.allocatePorts(db, count: 2 + count, range: config.ports, host: config.portalHost)
            let v = VolumeRecord(name: c.name, size: Int64(c.size), replicaCount: count, minHealthy: c.minHealthy ?? 1,
                                 qos: JSONText.encode(c.qos ?? QoS()), poolSelector: JSONText.encode(selector),
                                 phase: "active", portalPort: ports[0], apiPort: ports[1], generation: 1,
                                 createdAt: Timestamp.now(),
                                 source: source.map { JSONText.encode($0) } ?? restore.map { JSONText.encode($0) })
            try v.insert(db)
            for (i, pool) in fits.prefix(count).enumerated() {
                try ReplicaRecord.new(volume: c.name, pool: pool, port: ports[2 + i], role: "active").insert(db)
            }
            return .created(v)
        }
    }

    /// Applies a PATCH (a larger size, new QoS) to the volume's record; the generation moves when
    /// anything changed, and the reconciler takes it from there.
    static func patch(_ name: String, _ patch: VolumePatch, store: StateStore, config: ControlConfig) throws {
        if let s = patch.size { try VolumeSpec.checkSize(s) }
        if let q = patch.qos { try VolumeSpec.checkQoS(q) }
        try store.write { db in
            guard var v = try VolumeRecord.fetchOne(db, key: name), !v.deleting else {
                throw APIFailure.notFound("no volume \(name)")
            }
            var changed = false
            if let s = patch.size, s != UInt64(v.size) {
                guard s > UInt64(v.size) else {
                    throw APIFailure(.conflict, "volume-shrink", "a volume only grows: \(name) has \(v.size) bytes, asked \(s)")
                }
                // As at create: each replica's pool must have the new size free.
                let pools = Dictionary(uniqueKeysWithValues: try PoolRecord.fetchAll(db).map { ($0.name, $0) })
                for r in try ReplicaRecord.filter(Column("volume") == name).fetchAll(db) {
                    guard let p = pools[r.pool], Placement.fits(p, s, remote: config.poolsAreRemote) else {
                        throw APIFailure.invalid("insufficient-capacity", "\(s) bytes do not fit on pool \(r.pool) (replica \(r.id))")
                    }
                }
                v.size = Int64(s)
                changed = true
            }
            if var q = patch.qos {
                if q.burstSeconds == nil { q.burstSeconds = 1 }
                if q != v.qosValue {
                    v.qos = JSONText.encode(q)
                    changed = true
                }
            }
            if changed {
                v.generation += 1
                try v.update(db)
            }
        }
    }

    /// Marks the volume for deletion: the reconciler stops its processes and removes its data.
    static func markDeleting(_ name: String, store: StateStore) throws {
        try store.write { db in
            guard var v = try VolumeRecord.fetchOne(db, key: name) else { throw APIFailure.notFound("no volume \(name)") }
            if !v.deleting {
                v.phase = "deleting"
                try v.update(db)
            }
        }
    }
}
