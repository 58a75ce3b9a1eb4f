import CairnClient
import Foundation
@_implementationOnly import GRDB

// The desired state's rows (SQLite through GRDB). Each table has one owner that writes it: the
// API handlers write specs (pools, volumes, a replica's removal), the reconciler writes what it
// decided (placements of replacements, process records) and deletes what it finished removing.

/// `pool`: a directory for replicas.
struct PoolRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "pool"
    var name: String
    var path: String
    /// JSON object of labels.
    var labels: String
    var state: String
    var createdAt: String

    var labelMap: [String: String] { JSONText.decode(labels) ?? [:] }
    var poolState: PoolState { PoolState(rawValue: state) ?? .ready }
}

/// `volume`: a volume's spec and the ports of its controller.
struct VolumeRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "volume"
    var name: String
    var size: Int64
    var replicaCount: Int
    var minHealthy: Int
    /// JSON of `QoS`.
    var qos: String
    /// JSON object of labels a pool must have.
    var poolSelector: String
    /// active | deleting
    var phase: String
    var portalPort: Int
    var apiPort: Int
    /// Bumped by every spec change (PATCH); the reconciler pushes changes it has not pushed yet.
    var generation: Int
    var createdAt: String
    /// A clone's source (JSON of `CloneSource`); nil for a volume made empty.
    var source: String?

    var qosValue: QoS { JSONText.decode(qos) ?? QoS() }
    var cloneSource: CloneSource? { source.flatMap { JSONText.decode($0) } }
    var restoreSource: RestoreSource? { source.flatMap { JSONText.decode($0) } }
    /// "VOLUME/SNAPSHOT" for a clone, "URL ID" for a restore.
    var sourceText: String? {
        cloneSource.map { "\($0.volume)/\($0.snapshot)" } ?? restoreSource.map { "\($0.target.url) \($0.backup)" }
    }

    /// Every volume's size by name: what each pool has provisioned (placement's arithmetic).
    static func sizes(_ db: Database) throws -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: try VolumeRecord.fetchAll(db).map { ($0.name, UInt64($0.size)) })
    }
    var selector: [String: String] { JSONText.decode(poolSelector) ?? [:] }
    var deleting: Bool { phase == "deleting" }
}

/// Where a clone's data comes from: fixed when it is created, so its controller's command line
/// stays the same for good (the source may be replaced or deleted once the copy is done).
struct CloneSource: Codable, Sendable, Equatable {
    var volume: String
    var snapshot: String
    var snapshotID: String
    /// The source's replica addresses then.
    var from: [String]
}

/// Where a restored volume's data comes from: a backup on a target (its credentials are in the
/// volume's folder, not here).
struct RestoreSource: Codable, Sendable, Equatable {
    var backup: String
    var target: TargetRef
    var volume: String
    var snapshot: String
}

/// `backup`: a backup made through the apiserver.
struct BackupRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "backup"
    var id: String
    var volume: String
    var snapshot: String
    var target: String
    var createdAt: String
    var state: String
    var totalBytes: Int64
    var readBytes: Int64
    var uploadedBytes: Int64
    var newBlocks: Int
    var mibPerSecond: Double
    var previous: String?
    var error: String?

    var backup: Backup {
        Backup(id: id, volume: volume, snapshot: snapshot, target: target, createdAt: createdAt, state: state,
               totalBytes: UInt64(totalBytes), readBytes: UInt64(readBytes), uploadedBytes: UInt64(uploadedBytes),
               newBlocks: newBlocks, mibPerSecond: mibPerSecond, previous: previous, error: error)
    }
}

/// `replica`: one replica's placement.
struct ReplicaRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "replica"
    var id: String
    var volume: String
    var pool: String
    var port: Int
    /// Its data directory (inside the pool's path).
    var directory: String
    /// active | replacing (to be removed once its replacement is RW) | replacement (added for another)
    var role: String
    /// For a replacement: the id of the replica it takes the place of.
    var replaces: String?
    var createdAt: String
}

/// `process`: a process the local orchestrator started, so that a restarted apiserver can adopt it.
struct ProcessRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "process"
    /// `VOLUME/controller` or `VOLUME/replica/ID`.
    var key: String
    var volume: String
    var pid: Int32
    /// Field 22 of /proc/PID/stat (clock ticks after boot): with the pid, it names one process for good.
    var startTicks: Int64
    /// The command line: a JSON array of the argv (as /proc/PID/cmdline shows it).
    var cmdline: String

    var argv: [String] { JSONText.decode(cmdline) ?? [] }
    var startedAt: String
    var restarts: Int
}

/// `snapshot`: a volume's snapshot as its replicas listed it last.
struct SnapshotRecord: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    static let databaseTableName = "snapshot"
    var volume: String
    var name: String
    var id: String
    var createdAt: String
    var parent: String?
    var size: Int64
    var bytes: Int64
    var state: String

    init(volume: String, _ s: Snapshot) {
        self.volume = volume
        name = s.name
        id = s.id
        createdAt = s.createdAt
        parent = s.parent
        size = Int64(s.size)
        bytes = Int64(s.bytes)
        state = s.state
    }

    var snapshot: Snapshot {
        Snapshot(name: name, id: id, createdAt: createdAt, parent: parent, size: UInt64(size), bytes: UInt64(bytes), state: state)
    }
}

/// `event`: the event log.
struct EventRecord: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    static let databaseTableName = "event"
    var id: Int64?
    var time: String
    var type: String
    var volume: String?
    var replica: String?
    var message: String

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    var event: Event { Event(id: id ?? 0, time: time, type: type, volume: volume, replica: replica, message: message) }
}

enum JSONText {
    static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: WireJSON.encoder().encode(value), as: UTF8.self)) ?? "{}"
    }

    static func decode<T: Decodable>(_ text: String, as: T.Type = T.self) -> T? {
        try? JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}

/// RFC 3339 timestamps in UTC, with milliseconds.
enum Timestamp {
    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}
