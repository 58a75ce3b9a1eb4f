import CairnClient
import Foundation
@_implementationOnly import GRDB

/// The apiserver's desired state: one SQLite file (`DIR/state.db`, WAL) through GRDB. Writes are
/// serialized by GRDB's writer (one transaction at a time), which is what makes concurrent creates
/// of one name create it once. Each change is one transaction: a crash leaves it done or not done,
/// and the reconciler resumes from whatever is there.
final class StateStore: Sendable {
    let db: DatabasePool

    init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        db = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(db)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "pool") { t in
                t.primaryKey("name", .text)
                t.column("path", .text).notNull().unique()
                t.column("labels", .text).notNull()
                t.column("state", .text).notNull()
                t.column("createdAt", .text).notNull()
            }
            try db.create(table: "volume") { t in
                t.primaryKey("name", .text)
                t.column("size", .integer).notNull()
                t.column("replicaCount", .integer).notNull()
                t.column("minHealthy", .integer).notNull()
                t.column("qos", .text).notNull()
                t.column("poolSelector", .text).notNull()
                t.column("phase", .text).notNull()
                t.column("portalPort", .integer).notNull().unique()
                t.column("apiPort", .integer).notNull().unique()
                t.column("generation", .integer).notNull()
                t.column("createdAt", .text).notNull()
            }
            try db.create(table: "replica") { t in
                t.primaryKey("id", .text)
                t.column("volume", .text).notNull().references("volume", onDelete: .cascade)
                t.column("pool", .text).notNull().references("pool")
                t.column("port", .integer).notNull().unique()
                t.column("directory", .text).notNull()
                t.column("role", .text).notNull()
                t.column("replaces", .text)
                t.column("createdAt", .text).notNull()
            }
            try db.create(table: "process") { t in
                t.primaryKey("key", .text)
                t.column("volume", .text).notNull()
                t.column("pid", .integer).notNull()
                t.column("startTicks", .integer).notNull()
                t.column("cmdline", .text).notNull()
                t.column("startedAt", .text).notNull()
                t.column("restarts", .integer).notNull()
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .text).notNull()
                t.column("type", .text).notNull()
                t.column("volume", .text)
                t.column("replica", .text)
                t.column("message", .text).notNull()
            }
        }
        m.registerMigration("v2") { db in
            // What the replicas said last (the replicas hold the truth; the API refreshes it).
            try db.create(table: "snapshot") { t in
                t.column("volume", .text).notNull().references("volume", onDelete: .cascade)
                t.column("name", .text).notNull()
                t.column("id", .text).notNull()
                t.column("createdAt", .text).notNull()
                t.column("parent", .text)
                t.column("size", .integer).notNull()
                t.column("bytes", .integer).notNull()
                t.column("state", .text).notNull()
                t.primaryKey(["volume", "name"])
            }
        }
        m.registerMigration("v3") { db in
            // A clone's source: JSON of `CloneSource`.
            try db.alter(table: "volume") { t in t.add(column: "source", .text) }
        }
        m.registerMigration("v4") { db in
            // Backups outlive their volume: no reference to it.
            try db.create(table: "backup") { t in
                t.primaryKey("id", .text)
                t.column("volume", .text).notNull().indexed()
                t.column("snapshot", .text).notNull()
                t.column("target", .text).notNull()
                t.column("createdAt", .text).notNull()
                t.column("state", .text).notNull()
                t.column("totalBytes", .integer).notNull()
                t.column("readBytes", .integer).notNull()
                t.column("uploadedBytes", .integer).notNull()
                t.column("newBlocks", .integer).notNull()
                t.column("mibPerSecond", .double).notNull()
                t.column("previous", .text)
                t.column("error", .text)
            }
        }
        return m
    }

    func backups(of volume: String) throws -> [BackupRecord] {
        try db.read { try BackupRecord.filter(Column("volume") == volume).order(Column("createdAt"), Column("id")).fetchAll($0) }
    }

    func saveBackup(_ b: BackupRecord) throws {
        try db.write { try b.save($0) }
    }

    func snapshots(of volume: String) throws -> [SnapshotRecord] {
        try db.read { try SnapshotRecord.filter(Column("volume") == volume).order(Column("createdAt"), Column("name")).fetchAll($0) }
    }

    /// Replaces the volume's snapshot rows by `list` (what its controller says now).
    func setSnapshots(_ list: [Snapshot], of volume: String) throws {
        try db.write { db in
            guard try VolumeRecord.fetchOne(db, key: volume) != nil else { return }
            _ = try SnapshotRecord.filter(Column("volume") == volume).deleteAll(db)
            for s in list { try SnapshotRecord(volume: volume, s).insert(db) }
        }
    }

    // MARK: reads

    func pools() throws -> [PoolRecord] {
        try db.read { try PoolRecord.order(Column("name")).fetchAll($0) }
    }

    func pool(_ name: String) throws -> PoolRecord? {
        try db.read { try PoolRecord.fetchOne($0, key: name) }
    }

    func volumes() throws -> [VolumeRecord] {
        try db.read { try VolumeRecord.order(Column("name")).fetchAll($0) }
    }

    func volume(_ name: String) throws -> VolumeRecord? {
        try db.read { try VolumeRecord.fetchOne($0, key: name) }
    }

    func replicas(of volume: String? = nil) throws -> [ReplicaRecord] {
        try db.read { db in
            var q = ReplicaRecord.order(Column("createdAt"), Column("id"))
            if let volume { q = q.filter(Column("volume") == volume) }
            return try q.fetchAll(db)
        }
    }

    func processes() throws -> [ProcessRecord] {
        try db.read { try ProcessRecord.fetchAll($0) }
    }

    func events(after id: Int64, limit: Int) throws -> [EventRecord] {
        try db.read { try EventRecord.filter(Column("id") > id).order(Column("id")).limit(limit).fetchAll($0) }
    }

    // MARK: writes

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        try db.write(body)
    }

    @discardableResult
    func record(_ type: String, volume: String? = nil, replica: String? = nil, _ message: String) throws -> Event {
        try db.write { db in
            var e = EventRecord(id: nil, time: Timestamp.now(), type: type, volume: volume, replica: replica, message: message)
            try e.insert(db)
            return e.event
        }
    }

    func saveProcess(_ p: ProcessRecord) throws {
        try db.write { try p.save($0) }
    }

    func deleteProcess(_ key: String) throws {
        try db.write { _ = try ProcessRecord.deleteOne($0, key: key) }
    }
}
