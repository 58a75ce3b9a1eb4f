import CairnClient
import Foundation
import GRPCCore
import Logging

/// How the node plugin attaches volumes, and where it keeps its records.
public struct NodeOptions: Sendable {
    public enum Attach: String, Sendable, CaseIterable {
        /// open-iscsi and the kernel initiator.
        case iscsiadm
        /// qemu-storage-daemon (libiscsi) + FUSE + a loop device, for kernels without an initiator.
        case userspace
    }
    public var nodeID: String
    public var attach: Attach
    public var stateDir: String

    public init(nodeID: String, attach: Attach, stateDir: String) {
        self.nodeID = nodeID
        self.attach = attach
        self.stateDir = stateDir
    }
}

/// CSI Node: attach a volume's LUN, put a filesystem on it when it has none, mount it at the
/// staging path (stage); bind it into each pod (publish); undo both; grow it; report usage.
struct NodeService: Csi_V1_Node.SimpleServiceProtocol {
    static let topologyKey = "topology.cairn.io/node"

    let options: NodeOptions
    let api: JSONHTTPClient?
    let logger: Logger
    let attacher: any Attacher
    let staged: StagedVolumes
    let locks = VolumeLocks()

    init(options: NodeOptions, api: JSONHTTPClient?, logger: Logger) throws {
        self.options = options
        self.api = api
        self.logger = logger
        switch options.attach {
        case .iscsiadm: attacher = ISCSIAdmAttacher()
        case .userspace: attacher = UserspaceAttacher(initiator: "iqn.2026-11.io.cairn:node.\(Self.iqnSafe(options.nodeID))")
        }
        staged = try StagedVolumes(stateDir: options.stateDir)
    }

    /// Programs this node needs that are not installed.
    func toolsMissing() -> [String] {
        (attacher.tools + ["mount", "umount", "blkid", "mkfs.ext4", "resize2fs", "e2fsck"]).filter { Command.which($0) == nil }
    }

    func nodeGetInfo(request: Csi_V1_NodeGetInfoRequest, context: ServerContext) async throws -> Csi_V1_NodeGetInfoResponse {
        .with {
            $0.nodeID = options.nodeID
            $0.accessibleTopology = .with { $0.segments = [Self.topologyKey: options.nodeID] }
        }
    }

    func nodeGetCapabilities(request: Csi_V1_NodeGetCapabilitiesRequest,
                             context: ServerContext) async throws -> Csi_V1_NodeGetCapabilitiesResponse {
        let rpcs: [Csi_V1_NodeServiceCapability.RPC.TypeEnum] = [.stageUnstageVolume, .getVolumeStats, .expandVolume]
        return .with { $0.capabilities = rpcs.map { t in .with { $0.rpc = .with { $0.type = t } } } }
    }

    // MARK: stage

    func nodeStageVolume(request: Csi_V1_NodeStageVolumeRequest, context: ServerContext) async throws -> Csi_V1_NodeStageVolumeResponse {
        let volume = request.volumeID, stagingPath = MountTable.normalized(request.stagingTargetPath)
        guard !volume.isEmpty else { throw CSIFailure.invalid("NodeStageVolume: volume_id is required") }
        guard !request.stagingTargetPath.isEmpty else { throw CSIFailure.invalid("NodeStageVolume: staging_target_path is required") }
        guard request.hasVolumeCapability else { throw CSIFailure.invalid("NodeStageVolume: volume_capability is required") }
        if let why = VolumeCapabilities.refusal(request.volumeCapability) { throw CSIFailure.invalid("NodeStageVolume: \(why)") }
        guard CSINames.isDNSLabel(volume) else { throw CSIFailure.notFound("NodeStageVolume: no volume \(volume)") }
        let block: Bool, fsType: String, flags: [String]
        if case .mount(let m)? = request.volumeCapability.accessType {
            (block, fsType, flags) = (false, m.fsType.isEmpty ? "ext4" : m.fsType, m.mountFlags)
        } else {
            (block, fsType, flags) = (true, "ext4", [])
        }
        let readOnly = [.singleNodeReaderOnly, .multiNodeReaderOnly].contains(request.volumeCapability.accessMode.mode)
        let target = try await target(volume, context: request.volumeContext, publishContext: request.publishContext)

        try await locks.withLock(volume) {
            if let existing = staged.load(volume), existing.stagingPath != stagingPath {
                throw CSIFailure.exists("NodeStageVolume: \(volume) is staged at \(existing.stagingPath), not \(stagingPath)")
            }
            let attachment: Attachment
            do {
                attachment = try await attacher.attach(volume: volume, target: target, readOnly: readOnly,
                                                       dir: "\(options.stateDir)/attach/\(volume)") { a in
                    try staged.save(StagedVolume(volumeID: volume, stagingPath: stagingPath, attachment: a, block: block,
                                                 fsType: block ? nil : fsType, readOnly: readOnly))
                }
            } catch {
                throw CSIFailure.unavailable("NodeStageVolume: cannot attach \(volume) (\(target.iqn) at \(target.portal)): \(error)")
            }
            guard !block else {
                logger.info("NodeStageVolume \(volume): \(attachment.device) (block)")
                return
            }
            try FileManager.default.createDirectory(atPath: stagingPath, withIntermediateDirectories: true)
            if MountTable.isMountPoint(stagingPath) { return }
            let found = try await Filesystem.type(of: attachment.device)
            let fs = found ?? fsType
            try await CSIFailure.internalOnFailure("NodeStageVolume \(volume)") {
                if found == nil {
                    guard !readOnly else { throw CSIFailure.precondition("NodeStageVolume: \(volume) holds no filesystem and is staged read-only") }
                    try await Filesystem.make(fs, on: attachment.device)
                    logger.notice("NodeStageVolume \(volume): made \(fs) on \(attachment.device)")
                } else if !readOnly {
                    try await Filesystem.growOffline(fs, device: attachment.device)   // a volume grown while not staged
                }
                try await Filesystem.mount(attachment.device, at: stagingPath, type: fs, options: flags + (readOnly ? ["ro"] : []))
            }
            logger.info("NodeStageVolume \(volume): \(attachment.device) \(fs) on \(stagingPath)")
        }
        return .init()
    }

    func nodeUnstageVolume(request: Csi_V1_NodeUnstageVolumeRequest,
                           context: ServerContext) async throws -> Csi_V1_NodeUnstageVolumeResponse {
        let volume = request.volumeID, stagingPath = MountTable.normalized(request.stagingTargetPath)
        guard !volume.isEmpty else { throw CSIFailure.invalid("NodeUnstageVolume: volume_id is required") }
        guard !request.stagingTargetPath.isEmpty else { throw CSIFailure.invalid("NodeUnstageVolume: staging_target_path is required") }
        try await locks.withLock(volume) {
            try await CSIFailure.internalOnFailure("NodeUnstageVolume \(volume)") {
                if MountTable.isMountPoint(stagingPath) { try await Filesystem.unmount(stagingPath) }
                if let record = staged.load(volume) {
                    let users = MountTable.mounts(ofDevice: MountTable.deviceNumber(record.attachment.device) ?? "-")
                    guard users.isEmpty || record.attachment.device.isEmpty else {
                        throw CSIFailure.precondition("NodeUnstageVolume: \(volume) is still mounted at \(users.map(\.mountPoint).joined(separator: ", "))")
                    }
                    try await attacher.detach(record.attachment)
                    staged.remove(volume)
                }
            }
            logger.info("NodeUnstageVolume \(volume)")
        }
        return .init()
    }

    // MARK: publish

    func nodePublishVolume(request: Csi_V1_NodePublishVolumeRequest,
                           context: ServerContext) async throws -> Csi_V1_NodePublishVolumeResponse {
        let volume = request.volumeID, targetPath = MountTable.normalized(request.targetPath)
        guard !volume.isEmpty else { throw CSIFailure.invalid("NodePublishVolume: volume_id is required") }
        guard !request.targetPath.isEmpty else { throw CSIFailure.invalid("NodePublishVolume: target_path is required") }
        guard !request.stagingTargetPath.isEmpty else { throw CSIFailure.invalid("NodePublishVolume: staging_target_path is required") }
        guard request.hasVolumeCapability else { throw CSIFailure.invalid("NodePublishVolume: volume_capability is required") }
        if let why = VolumeCapabilities.refusal(request.volumeCapability) { throw CSIFailure.invalid("NodePublishVolume: \(why)") }
        try await locks.withLock(volume) {
            guard let record = staged.load(volume), record.stagingPath == MountTable.normalized(request.stagingTargetPath) else {
                throw CSIFailure.precondition("NodePublishVolume: \(volume) is not staged at \(request.stagingTargetPath)")
            }
            var isBlock = false
            if case .block? = request.volumeCapability.accessType { isBlock = true }
            guard isBlock == record.block else {
                throw CSIFailure.invalid("NodePublishVolume: \(volume) was staged as \(record.block ? "a block device" : "a filesystem")")
            }
            let readOnly = request.readonly || record.readOnly
            if MountTable.isMountPoint(targetPath) {
                let ro = MountTable.entries().last { $0.mountPoint == targetPath }?.options.split(separator: ",").contains("ro") ?? false
                guard ro == readOnly else {
                    throw CSIFailure.exists("NodePublishVolume: \(targetPath) is published \(ro ? "read-only" : "read-write") already")
                }
                return
            }
            let source = record.block ? record.attachment.device : record.stagingPath
            try await CSIFailure.internalOnFailure("NodePublishVolume \(volume)") {
                if record.block {
                    try FileManager.default.createDirectory(atPath: (targetPath as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    if !FileManager.default.fileExists(atPath: targetPath) { _ = FileManager.default.createFile(atPath: targetPath, contents: nil) }
                } else {
                    try FileManager.default.createDirectory(atPath: targetPath, withIntermediateDirectories: true)
                }
                try await Filesystem.bind(source, at: targetPath, readOnly: readOnly)
            }
            logger.info("NodePublishVolume \(volume): \(targetPath)\(readOnly ? " (read-only)" : "")")
        }
        return .init()
    }

    func nodeUnpublishVolume(request: Csi_V1_NodeUnpublishVolumeRequest,
                             context: ServerContext) async throws -> Csi_V1_NodeUnpublishVolumeResponse {
        let volume = request.volumeID, targetPath = MountTable.normalized(request.targetPath)
        guard !volume.isEmpty else { throw CSIFailure.invalid("NodeUnpublishVolume: volume_id is required") }
        guard !request.targetPath.isEmpty else { throw CSIFailure.invalid("NodeUnpublishVolume: target_path is required") }
        try await locks.withLock(volume) {
            try await CSIFailure.internalOnFailure("NodeUnpublishVolume \(volume)") {
                while MountTable.isMountPoint(targetPath) { try await Filesystem.unmount(targetPath) }
                var st = stat()
                if lstat(targetPath, &st) == 0 {
                    if (st.st_mode & S_IFMT) == S_IFDIR { rmdir(targetPath) } else { unlink(targetPath) }
                }
            }
            logger.info("NodeUnpublishVolume \(volume): \(targetPath)")
        }
        return .init()
    }

    // MARK: stats, expand

    func nodeGetVolumeStats(request: Csi_V1_NodeGetVolumeStatsRequest,
                            context: ServerContext) async throws -> Csi_V1_NodeGetVolumeStatsResponse {
        guard !request.volumeID.isEmpty else { throw CSIFailure.invalid("NodeGetVolumeStats: volume_id is required") }
        guard !request.volumePath.isEmpty else { throw CSIFailure.invalid("NodeGetVolumeStats: volume_path is required") }
        var st = stat()
        guard stat(request.volumePath, &st) == 0 else { throw CSIFailure.notFound("NodeGetVolumeStats: \(request.volumePath) does not exist") }
        if (st.st_mode & S_IFMT) == S_IFBLK {
            let size = Filesystem.deviceSize(request.volumePath) ?? 0
            return .with { $0.usage = [.with { $0.unit = .bytes; $0.total = Int64(clamping: size) }] }
        }
        guard MountTable.isMountPoint(request.volumePath) else {
            throw CSIFailure.notFound("NodeGetVolumeStats: nothing is mounted at \(request.volumePath)")
        }
        var fs = statvfs()
        guard statvfs(request.volumePath, &fs) == 0 else {
            throw CSIFailure.internalError("NodeGetVolumeStats: statvfs \(request.volumePath): \(String(cString: strerror(errno)))")
        }
        let unit = Int64(fs.f_frsize)
        return .with {
            $0.usage = [
                .with {
                    $0.unit = .bytes
                    $0.total = Int64(fs.f_blocks) * unit
                    $0.available = Int64(fs.f_bavail) * unit
                    $0.used = (Int64(fs.f_blocks) - Int64(fs.f_bfree)) * unit
                },
                .with {
                    $0.unit = .inodes
                    $0.total = Int64(fs.f_files)
                    $0.available = Int64(fs.f_favail)
                    $0.used = Int64(fs.f_files) - Int64(fs.f_ffree)
                },
            ]
        }
    }

    func nodeExpandVolume(request: Csi_V1_NodeExpandVolumeRequest, context: ServerContext) async throws -> Csi_V1_NodeExpandVolumeResponse {
        let volume = request.volumeID
        guard !volume.isEmpty else { throw CSIFailure.invalid("NodeExpandVolume: volume_id is required") }
        guard !request.volumePath.isEmpty else { throw CSIFailure.invalid("NodeExpandVolume: volume_path is required") }
        return try await locks.withLock(volume) {
            guard let record = staged.load(volume) else { throw CSIFailure.notFound("NodeExpandVolume: \(volume) is not staged on this node") }
            // The size the LUN now has: the apiserver's word when there is one, else what was asked.
            var size = try ControllerService.size(request.hasCapacityRange ? request.capacityRange : nil, floor: 0)
            if let api, let v: CairnClient.Volume = try? await api.call("GET", "/v1/volumes/\(volume)") { size = v.size }
            try await CSIFailure.internalOnFailure("NodeExpandVolume \(volume)") {
                try await attacher.refreshSize(record.attachment, size: size)
                if let seen = Filesystem.deviceSize(record.attachment.device), seen < size {
                    throw CSIFailure.unavailable("NodeExpandVolume: \(record.attachment.device) shows \(seen) bytes, not yet \(size)")
                }
                if !record.block, let fs = record.fsType {
                    let others = MountTable.mounts(ofDevice: MountTable.deviceNumber(record.attachment.device) ?? "-")
                        .filter { $0.mountPoint != record.stagingPath }
                    try await Filesystem.grow(fs, device: record.attachment.device, mountedAt: record.stagingPath,
                                              offlineAllowed: others.isEmpty)
                }
            }
            let now = Filesystem.deviceSize(record.attachment.device) ?? size
            logger.info("NodeExpandVolume \(volume): \(now) bytes")
            return .with { $0.capacityBytes = Int64(clamping: now) }
        }
    }

    // MARK: helpers

    /// The volume's iSCSI target, once the volume serves: from the volume context CreateVolume
    /// gave, else the apiserver's record. With an apiserver to ask, a volume that does not serve
    /// yet (just created, a clone still copying, its replicas not yet writable) is UNAVAILABLE,
    /// and the CO retries: an initiator attached before would see its first writes fail.
    private func target(_ volume: String, context: [String: String], publishContext: [String: String]) async throws -> ISCSITarget {
        let merged = context.merging(publishContext) { _, p in p }
        var found: ISCSITarget?
        if let portal = merged["portal"], let iqn = merged["iqn"], !portal.isEmpty, !iqn.isEmpty {
            found = ISCSITarget(portal: portal, iqn: iqn, lun: Int(merged["lun"] ?? "0") ?? 0)
        }
        guard let api else {
            guard let found else { throw CSIFailure.invalid("NodeStageVolume: the volume context names no portal and iqn, and no --apiserver is set") }
            return found
        }
        let v: CairnClient.Volume
        do {
            v = try await api.call("GET", "/v1/volumes/\(volume)")
        } catch {
            // The control plane is off the data path: with the apiserver away, a volume the CO
            // names by its context is attached all the same.
            if case .unreachable? = error as? ClientError, let found {
                logger.warning("NodeStageVolume \(volume): the apiserver does not answer; attaching \(found.iqn) at \(found.portal) as the volume context says")
                return found
            }
            throw CSIFailure.from(error, "NodeStageVolume \(volume)")
        }
        guard v.status.serves else {
            throw CSIFailure.unavailable("NodeStageVolume: volume \(volume) does not serve yet (\(v.status.state))")
        }
        return found ?? ISCSITarget(portal: v.status.portal, iqn: v.status.iqn, lun: 0)
    }

    /// An IQN's last part may hold letters, digits, '.', '-' and ':' only.
    static func iqnSafe(_ s: String) -> String {
        String(s.lowercased().map { c in c.isLetter && c.isASCII || c.isNumber && c.isASCII || c == "." || c == "-" ? c : "-" })
    }
}
