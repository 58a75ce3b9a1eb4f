import CairnClient
import Foundation
import GRPCCore
import Logging
import SwiftProtobuf

/// CSI Controller: volumes and snapshots, through the apiserver's REST API. Every call is
/// idempotent, as CSI requires: a create that finds what it would make answers as if it made
/// it; a delete of what is gone succeeds.
struct ControllerService: Csi_V1_Controller.SimpleServiceProtocol {
    let api: JSONHTTPClient
    let logger: Logger

    /// A volume's size when a create gives no capacity range.
    static let defaultSize: UInt64 = 1 << 30
    /// The apiserver's size unit.
    static let sizeAlignment: UInt64 = 4096

    // MARK: volumes

    func createVolume(request: Csi_V1_CreateVolumeRequest, context: ServerContext) async throws -> Csi_V1_CreateVolumeResponse {
        guard !request.name.isEmpty else { throw CSIFailure.invalid("CreateVolume: name is required") }
        guard !request.volumeCapabilities.isEmpty else { throw CSIFailure.invalid("CreateVolume: volume_capabilities are required") }
        if let why = VolumeCapabilities.refusal(request.volumeCapabilities) { throw CSIFailure.invalid("CreateVolume: \(why)") }
        let parameters = try VolumeParameters(request.parameters)
        let name = CSINames.volume(request.name)

        var fromSnapshot: String?
        var floor: UInt64 = 0   // a clone is at least its source's size
        if request.hasVolumeContentSource {
            switch request.volumeContentSource.type {
            case .snapshot(let s)?:
                guard let ref = CSINames.parseSnapshotID(s.snapshotID), let snap = try await snapshot(ref.volume, ref.snapshot) else {
                    throw CSIFailure.notFound("CreateVolume: no snapshot \(s.snapshotID)")
                }
                fromSnapshot = s.snapshotID
                floor = snap.size
            case .volume(let v)?:
                guard let source = try await volume(v.volumeID) else { throw CSIFailure.notFound("CreateVolume: no volume \(v.volumeID)") }
                let snap = try await cloneSnapshot(of: source, for: name)
                fromSnapshot = CSINames.snapshotID(volume: source.name, snapshot: snap.name)
                floor = snap.size
            case nil:
                throw CSIFailure.invalid("CreateVolume: volume_content_source names neither a snapshot nor a volume")
            }
        }
        let size = try Self.size(request.hasCapacityRange ? request.capacityRange : nil, floor: floor)

        let create = VolumeCreate(name: name, size: size, replicas: parameters.replicas, minHealthy: parameters.minHealthy,
                                  qos: parameters.qos.isEmpty ? nil : parameters.qos, poolSelector: parameters.poolSelector,
                                  fromSnapshot: fromSnapshot)
        let made: CairnClient.Volume
        do {
            made = try await api.call("POST", "/v1/volumes", body: create)
        } catch {
            if CSIFailure.slug(of: error) == "volume-exists" {
                throw CSIFailure.exists("CreateVolume: volume \(name) exists with another size or parameters")
            }
            throw CSIFailure.from(error, "CreateVolume \(name)")
        }
        logger.info("CreateVolume \(request.name) -> \(made.name), \(made.size) bytes\(fromSnapshot.map { " from \($0)" } ?? "")")
        var answer = Self.csiVolume(made)
        if request.hasVolumeContentSource { answer.contentSource = request.volumeContentSource }
        return .with { $0.volume = answer }
    }

    func deleteVolume(request: Csi_V1_DeleteVolumeRequest, context: ServerContext) async throws -> Csi_V1_DeleteVolumeResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("DeleteVolume: volume_id is required") }
        guard CSINames.isDNSLabel(request.volumeID), let v = try await volume(request.volumeID) else { return .init() }
        // Snapshots live in the volume's replicas: deleting it would take them along, so the CO
        // deletes them first (VolumeSnapshots outlive their PVC in Kubernetes).
        try await sweepCloneSnapshots(of: v)
        let left = try await volume(v.name)?.snapshots.filter { $0.state != "deleting" } ?? []
        if !left.isEmpty {
            throw CSIFailure.precondition("DeleteVolume: volume \(v.name) has snapshots (\(left.map(\.name).joined(separator: ", "))): delete them first")
        }
        do {
            try await api.call("DELETE", "/v1/volumes/\(v.name)")
        } catch {
            if CSIFailure.slug(of: error) == "not-found" { return .init() }
            throw CSIFailure.from(error, "DeleteVolume \(v.name)")
        }
        logger.info("DeleteVolume \(v.name)")
        // A clone of a volume was copied from a snapshot taken for it: it goes with the clone.
        if let source = v.source, let ref = CSINames.parseSnapshotID(source), ref.snapshot.hasPrefix(CSINames.clonePrefix) {
            try? await api.call("DELETE", "/v1/volumes/\(ref.volume)/snapshots/\(ref.snapshot)")
        }
        return .init()
    }

    func controllerPublishVolume(request: Csi_V1_ControllerPublishVolumeRequest,
                                 context: ServerContext) async throws -> Csi_V1_ControllerPublishVolumeResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("ControllerPublishVolume: volume_id is required") }
        guard !request.nodeID.isEmpty else { throw CSIFailure.invalid("ControllerPublishVolume: node_id is required") }
        guard request.hasVolumeCapability else { throw CSIFailure.invalid("ControllerPublishVolume: volume_capability is required") }
        if let why = VolumeCapabilities.refusal(request.volumeCapability) { throw CSIFailure.invalid("ControllerPublishVolume: \(why)") }
        guard let v = try await volume(request.volumeID) else { throw CSIFailure.notFound("ControllerPublishVolume: no volume \(request.volumeID)") }
        return .with { $0.publishContext = Self.context(v) }
    }

    func controllerUnpublishVolume(request: Csi_V1_ControllerUnpublishVolumeRequest,
                                   context: ServerContext) async throws -> Csi_V1_ControllerUnpublishVolumeResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("ControllerUnpublishVolume: volume_id is required") }
        return .init()
    }

    func validateVolumeCapabilities(request: Csi_V1_ValidateVolumeCapabilitiesRequest,
                                    context: ServerContext) async throws -> Csi_V1_ValidateVolumeCapabilitiesResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("ValidateVolumeCapabilities: volume_id is required") }
        guard !request.volumeCapabilities.isEmpty else { throw CSIFailure.invalid("ValidateVolumeCapabilities: volume_capabilities are required") }
        guard try await volume(request.volumeID) != nil else { throw CSIFailure.notFound("ValidateVolumeCapabilities: no volume \(request.volumeID)") }
        if let why = VolumeCapabilities.refusal(request.volumeCapabilities) { return .with { $0.message = why } }
        _ = try VolumeParameters(request.parameters)
        return .with {
            $0.confirmed = .with {
                $0.volumeCapabilities = request.volumeCapabilities
                $0.volumeContext = request.volumeContext
                $0.parameters = request.parameters
            }
        }
    }

    func listVolumes(request: Csi_V1_ListVolumesRequest, context: ServerContext) async throws -> Csi_V1_ListVolumesResponse {
        let all: [CairnClient.Volume]
        do { all = try await api.call("GET", "/v1/volumes") } catch { throw CSIFailure.from(error, "ListVolumes") }
        let (page, next) = try Self.page(all.sorted { $0.name < $1.name }, max: request.maxEntries, token: request.startingToken)
        return .with {
            $0.entries = page.map { v in .with { $0.volume = Self.csiVolume(v) } }
            $0.nextToken = next
        }
    }

    func getCapacity(request: Csi_V1_GetCapacityRequest, context: ServerContext) async throws -> Csi_V1_GetCapacityResponse {
        if let why = VolumeCapabilities.refusal(request.volumeCapabilities) { throw CSIFailure.invalid("GetCapacity: \(why)") }
        let parameters = try VolumeParameters(request.parameters)
        let pools: [Pool]
        do { pools = try await api.call("GET", "/v1/pools") } catch { throw CSIFailure.from(error, "GetCapacity") }
        // A volume of n replicas needs n pools with its size free: the n-th largest free space.
        let free = pools.filter { p in p.state == .ready && (parameters.poolSelector ?? [:]).allSatisfy { p.labels[$0.key] == $0.value } }
            .map(\.freeBytes).sorted(by: >)
        let n = parameters.replicas ?? 3
        let most = free.count >= n ? free[n - 1] / Self.sizeAlignment * Self.sizeAlignment : 0
        return .with {
            $0.availableCapacity = Int64(clamping: most)
            $0.maximumVolumeSize = Google_Protobuf_Int64Value(Int64(clamping: most))
            $0.minimumVolumeSize = Google_Protobuf_Int64Value(Int64(Self.sizeAlignment))
        }
    }

    func controllerGetCapabilities(request: Csi_V1_ControllerGetCapabilitiesRequest,
                                   context: ServerContext) async throws -> Csi_V1_ControllerGetCapabilitiesResponse {
        let rpcs: [Csi_V1_ControllerServiceCapability.RPC.TypeEnum] = [
            .createDeleteVolume, .publishUnpublishVolume, .listVolumes, .getCapacity, .createDeleteSnapshot,
            .listSnapshots, .cloneVolume, .expandVolume,
        ]
        return .with { $0.capabilities = rpcs.map { t in .with { $0.rpc = .with { $0.type = t } } } }
    }

    func controllerExpandVolume(request: Csi_V1_ControllerExpandVolumeRequest,
                                context: ServerContext) async throws -> Csi_V1_ControllerExpandVolumeResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("ControllerExpandVolume: volume_id is required") }
        guard request.hasCapacityRange else { throw CSIFailure.invalid("ControllerExpandVolume: capacity_range is required") }
        guard let v = try await volume(request.volumeID) else { throw CSIFailure.notFound("ControllerExpandVolume: no volume \(request.volumeID)") }
        let wanted = try Self.size(request.capacityRange, floor: 0)
        var size = v.size
        if wanted > v.size {
            do {
                let grown: CairnClient.Volume = try await api.call("PATCH", "/v1/volumes/\(v.name)", body: VolumePatch(size: wanted))
                size = grown.size
            } catch {
                if CSIFailure.slug(of: error) == "insufficient-capacity" {
                    throw CSIFailure.outOfRange("ControllerExpandVolume: \(wanted) bytes do not fit the pools of \(v.name)")
                }
                throw CSIFailure.from(error, "ControllerExpandVolume \(v.name)")
            }
            logger.info("ControllerExpandVolume \(v.name): \(v.size) -> \(size) bytes")
        }
        try await waitServed(v.name, size: size)
        var block = false
        if case .block? = request.volumeCapability.accessType { block = true }
        return .with {
            $0.capacityBytes = Int64(clamping: size)
            $0.nodeExpansionRequired = !block
        }
    }

    // MARK: helpers

    /// Returns once the volume's controller serves `size` bytes: the apiserver records a growth at
    /// once and pushes it to the controller after, and the node must not look for the new size
    /// before it is there. UNAVAILABLE after a minute (the CO retries).
    func waitServed(_ name: String, size: UInt64) async throws {
        try await wait(name, seconds: 60, what: "ControllerExpandVolume", until: "serving \(size) bytes") {
            ($0.status.servedSize ?? 0) >= size
        }
    }

    /// Polls the volume until `done` holds of it: NOT_FOUND when it is gone, UNAVAILABLE (the CO
    /// retries) after `seconds`.
    func wait(_ name: String, seconds: Int, what: String, until: String,
              _ done: (CairnClient.Volume) -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            guard let v = try await volume(name) else { throw CSIFailure.notFound("\(what): no volume \(name)") }
            if done(v) { return }
            guard ContinuousClock.now < deadline else {
                throw CSIFailure.unavailable("\(what): volume \(name) is not \(until) yet (\(v.status.state))")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The volume named `name`, or nil when there is none (a name Cairn could not have is none).
    func volume(_ name: String) async throws -> CairnClient.Volume? {
        guard DNSLabel.isValid(name) else { return nil }
        do {
            return try await api.call("GET", "/v1/volumes/\(name)")
        } catch {
            if CSIFailure.slug(of: error) == "not-found" { return nil }
            throw CSIFailure.from(error, "volume \(name)")
        }
    }

    /// The size a capacity range asks for, in the apiserver's unit: the required bytes rounded up
    /// (to a MiB when the limit allows), the default when none is given, never below `floor`.
    static func size(_ range: Csi_V1_CapacityRange?, floor: UInt64) throws -> UInt64 {
        let required = range?.requiredBytes ?? 0
        let limit = range?.limitBytes ?? 0
        guard required >= 0, limit >= 0 else { throw CSIFailure.invalid("capacity_range: bytes must not be negative") }
        if limit > 0 && required > limit { throw CSIFailure.outOfRange("capacity_range: required \(required) exceeds the limit \(limit)") }
        func up(_ n: UInt64, _ unit: UInt64) -> UInt64 { (n + unit - 1) / unit * unit }
        var size: UInt64
        if required > 0 {
            size = max(UInt64(required), floor)
        } else {
            size = max(floor, limit > 0 ? min(defaultSize, UInt64(limit)) : defaultSize)
        }
        size = up(size, 1 << 20) <= UInt64(limit) || limit == 0 ? up(size, 1 << 20) : up(size, sizeAlignment)
        if limit > 0 && size > UInt64(limit) {
            throw CSIFailure.outOfRange("capacity_range: no size of \(sizeAlignment)-byte units fits \(required)...\(limit) bytes"
                                        + (floor > 0 ? " and the source's \(floor)" : ""))
        }
        guard size <= 1 << 50 else { throw CSIFailure.outOfRange("capacity_range: \(size) bytes is more than 1 PiB") }
        return size
    }

    /// One page of `items` after `token` (the index to start at, as the last page gave it out).
    static func page<T>(_ items: [T], max: Int32, token: String) throws -> ([T], String) {
        guard max >= 0 else { throw CSIFailure.invalid("max_entries must not be negative") }
        var start = 0
        if !token.isEmpty {
            guard let n = Int(token), n >= 0, n <= items.count else { throw CSIFailure.aborted("starting_token \"\(token.prefix(40))\" is not one this plugin gave out") }
            start = n
        }
        let end = max == 0 ? items.count : min(items.count, start + Int(max))
        return (Array(items[start..<end]), end < items.count ? String(end) : "")
    }

    /// The iSCSI address of a volume, as the node plugin needs it.
    static func context(_ v: CairnClient.Volume) -> [String: String] {
        ["portal": v.status.portal, "iqn": v.status.iqn, "lun": "0"]
    }

    static func csiVolume(_ v: CairnClient.Volume) -> Csi_V1_Volume {
        .with {
            $0.volumeID = v.name
            $0.capacityBytes = Int64(clamping: v.size)
            $0.volumeContext = context(v)
            if let source = v.source, let ref = CSINames.parseSnapshotID(source),
               !ref.snapshot.hasPrefix(CSINames.clonePrefix) {
                $0.contentSource = .with { $0.snapshot = .with { $0.snapshotID = source } }
            }
        }
    }
}
