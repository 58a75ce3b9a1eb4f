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
