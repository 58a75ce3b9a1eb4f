import CairnClient
import Foundation

/// What a volume's controller says of itself (`GET /v1/volume` and `GET /v1/replicas` of its API):
/// the fields the apiserver folds into a volume's status.
struct ControllerView: Decodable, Sendable, Equatable {
    struct VolumePart: Decodable, Sendable, Equatable {
        var name: String
        var size: UInt64
        var state: String
        var epoch: UInt64
        var minHealthy: Int
        var populate: PopulatePart?
        var populateError: String?
    }

    /// A new volume's first copy (the controller's `RebuildProgress`, which has no percent).
    struct PopulatePart: Decodable, Sendable, Equatable {
        var kind: String
        var totalBytes: UInt64
        var copiedBytes: UInt64
        var finished: Bool
        var percent: Double { totalBytes == 0 ? 100 : Double(copiedBytes) * 100 / Double(totalBytes) }
    }

    struct ReplicaPart: Decodable, Sendable, Equatable {
        var address: String
        var id: String?
        var mode: String
        var connected: Bool
        var rebuild: RebuildPart?
    }

    struct RebuildPart: Decodable, Sendable, Equatable {
        var kind: String
        var totalBytes: UInt64
        var copiedBytes: UInt64
        var percent: Double
        var finished: Bool
    }

    var volume: VolumePart
    var replicas: [ReplicaPart]

    func replica(at address: String) -> ReplicaPart? { replicas.first { $0.address == address } }
}

/// The controller's `/v1/stats` (Jiva's names, numbers as strings).
struct ControllerStats: Decodable, Sendable {
    var Name: String
    var ReadIOPS: String
    var TotalReadTime: String
    var TotalReadBytes: String
    var WriteIOPS: String
    var TotalWriteTime: String
    var TotalWriteBytes: String
    var UsedLogicalBlocks: String
    var SectorSize: String
    var Size: String
    var UpTime: Double
    var ReplicaCounter: Int
    var Status: String

    var stats: VolumeStats {
        let reads = UInt64(ReadIOPS) ?? 0, writes = UInt64(WriteIOPS) ?? 0
        let sector = Int(SectorSize) ?? 512
        return VolumeStats(name: Name, readOps: reads, writeOps: writes, readBytes: UInt64(TotalReadBytes) ?? 0,
                           writeBytes: UInt64(TotalWriteBytes) ?? 0,
                           readLatencyMicros: reads == 0 ? 0 : Double(UInt64(TotalReadTime) ?? 0) / Double(reads) / 1000,
                           writeLatencyMicros: writes == 0 ? 0 : Double(UInt64(TotalWriteTime) ?? 0) / Double(writes) / 1000,
                           usedBytes: (UInt64(UsedLogicalBlocks) ?? 0) * UInt64(sector), size: UInt64(Size) ?? 0,
                           sectorSize: sector, uptimeSeconds: UpTime, replicaCount: ReplicaCounter, status: Status)
    }
}

/// The apiserver's client of one controller's HTTP API.
struct ControllerClient: Sendable {
    let http: JSONHTTPClient

    init(baseURL: String) {
        http = JSONHTTPClient(baseURL: baseURL, timeoutSeconds: 3)
    }

    func view() async throws -> ControllerView {
        try await http.call("GET", "/v1/status")
    }

    func stats() async throws -> VolumeStats {
        try await http.call("GET", "/v1/stats", as: ControllerStats.self).stats
    }

    func qos() async throws -> QoS {
        try await http.call("GET", "/v1/qos")
    }

    func setQoS(_ q: QoS) async throws {
        let _: QoS = try await http.call("PUT", "/v1/qos", body: q)
    }

    func grow(to size: UInt64) async throws {
        let answer = try await http.send("PUT", "/v1/volume/size", body: Data(#"{"size":\#(size)}"#.utf8),
                                         timeoutSeconds: 120)
        try JSONHTTPClient.check(answer)
    }

    func addReplica(_ address: String) async throws {
        let answer = try await http.send("POST", "/v1/replicas", body: Data(#"{"address":"\#(address)"}"#.utf8))
        // 409: it is there already (a retry after a crash): done.
        if answer.status != 409 { try JSONHTTPClient.check(answer) }
    }

    /// Removes a replica from the set; true when it is gone (or was never there), false when the
    /// controller refuses (409: the set would fall below min-healthy).
    func removeReplica(_ address: String) async throws -> Bool {
        let escaped = address.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? address
        let answer = try await http.send("DELETE", "/v1/replicas/\(escaped)")
        if answer.status < 300 || answer.status == 404 { return true }
        if answer.status == 409 { return false }
        try JSONHTTPClient.check(answer)
        return true
    }

    // MARK: Snapshots (the controller's problem documents pass through as `ClientError.problem`)

    private struct SnapshotListAnswer: Decodable {
        struct Item: Decodable {
            var name: String
            var id: String
            var createdAt: String
            var parent: String?
            var size: UInt64
            var bytes: UInt64
            var deleting: Bool
            var snapshot: Snapshot {
                Snapshot(name: name, id: id, createdAt: createdAt, parent: parent, size: size, bytes: bytes,
                         state: deleting ? "deleting" : "ready")
            }
        }
        var snapshots: [Item]
    }

    func snapshots() async throws -> [Snapshot] {
        try await http.call("GET", "/v1/snapshots", as: SnapshotListAnswer.self).snapshots.map(\.snapshot)
    }

    func createSnapshot(_ name: String) async throws -> Snapshot {
        let answer = try await http.send("POST", "/v1/snapshots", body: try WireJSON.encoder().encode(SnapshotRequest(name: name)),
                                         timeoutSeconds: 60)
        try JSONHTTPClient.check(answer)
        return try JSONDecoder().decode(SnapshotListAnswer.Item.self, from: answer.body).snapshot
    }

    func deleteSnapshot(_ name: String) async throws {
        let answer = try await http.send("DELETE", "/v1/snapshots/\(Self.escape(name))", timeoutSeconds: 60)
        try JSONHTTPClient.check(answer)
    }

    func revert(to name: String) async throws {
        let answer = try await http.send("POST", "/v1/snapshots/\(Self.escape(name))/revert", timeoutSeconds: 120)
        try JSONHTTPClient.check(answer)
    }

    /// The controller's backup job (its `BackupView`).
    struct BackupJobAnswer: Decodable, Sendable {
        var id: String
        var volume: String
        var snapshot: String
        var target: String
        var state: String
        var previous: String?
        var totalBytes: UInt64
        var readBytes: UInt64
        var newBlocks: Int
        var uploadedBytes: UInt64
        var mibPerSecond: Double
        var error: String?
    }

    func startBackup(snapshot: String, target: TargetRef) async throws -> BackupJobAnswer {
        struct Body: Encodable { var snapshot: String; var target: TargetRef }
        let answer = try await http.send("POST", "/v1/backups", body: try WireJSON.encoder().encode(Body(snapshot: snapshot, target: target)),
                                         timeoutSeconds: 60)
        try JSONHTTPClient.check(answer)
        return try JSONDecoder().decode(BackupJobAnswer.self, from: answer.body)
    }

    func backupJob(_ id: String) async throws -> BackupJobAnswer {
        try await http.call("GET", "/v1/backups/\(Self.escape(id))")
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    func shutdown() async { await http.shutdown() }
}
