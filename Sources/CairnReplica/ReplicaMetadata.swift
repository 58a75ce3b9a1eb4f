#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CairnWire

/// What a replica persists beside its data, in DIR/replica.json (replaced atomically).
struct ReplicaMetadata: Codable, Equatable {
    struct MapEntry: Codable, Equatable {
        var member: String
        var base: EpochRecord
        var granularity: UInt64
        var file: String
    }

    var format = 1
    var replicaID: String
    var size: UInt64
    /// The sizes it had before each grow, oldest first: a restart with one of them (the
    /// `--size` it was created with) is not a mistake. Missing in metadata of replicas never grown.
    var formerSizes: [UInt64]?
    /// Set by the first controller that connects; a replica serves one volume for life.
    var volume: String?
    /// The newest membership persisted here; nil while new or wiped (no data worth serving).
    var record: EpochRecord?
    var maps: [MapEntry] = []
    /// The head layer's file (where writes go); nil: `volume.img`, as before snapshots existed.
    var head: String?
    /// The snapshot the head sits on (its parent layer); nil: the head is the only layer.
    var headParent: String?
    /// Snapshots in the order they were created (or installed by a rebuild): a tree of layers,
    /// each on its parent; the head's chain is the head, its parent, that one's parent...
    var snapshots: [SnapshotEntry]?
    /// Changed by each revert (the controller's id for it): replicas that agree on the head's
    /// parent but not on this one did not all take a revert.
    var headID: String?
    /// The number of the next layer file (`layer-N.img`).
    var nextLayer: Int?

    struct SnapshotEntry: Codable, Equatable {
        var id: String
        var name: String
        var createdAt: Double
        /// The layer file that holds what was written between its parent and it.
        var file: String
        var parent: String?
        /// The volume's size when it was taken (its layer file's size).
        var size: UInt64
        /// Being merged into its children (the delete finishes after a restart too).
        var deleting: Bool?
    }

    var headFile: String { head ?? "volume.img" }
    var snapshotList: [SnapshotEntry] { snapshots ?? [] }

    mutating func grow(to newSize: UInt64) {
        formerSizes = (formerSizes ?? []) + [size]
        size = newSize
    }

    static func load(_ path: String) throws(ReplicaError) -> ReplicaMetadata? {
        guard let bytes = try AtomicFile.read(path) else { return nil }
        do {
            return try JSONDecoder().decode(ReplicaMetadata.self, from: Data(bytes))
        } catch {
            throw .config("\(path) is not valid replica metadata: \(error)")
        }
    }

    func save(_ path: String, directory: String) throws(ReplicaError) {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes: [UInt8]
        do { bytes = Array(try e.encode(self)) } catch { throw .io("encode metadata: \(error)") }
        try AtomicFile.write(bytes, to: path, directory: directory)
    }
}
