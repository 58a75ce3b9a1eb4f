/// Which CSI volume capabilities a Cairn volume can serve. An iSCSI LUN is a block device any
/// node can reach: single-node modes as a filesystem (ext4 or xfs) or a raw block device; modes
/// across nodes only as a raw block device (the application coordinates its writers, as with a
/// cluster filesystem), or read-only.
enum VolumeCapabilities {
    static let filesystems: Set<String> = ["", "ext4", "xfs"]

    /// Why `capability` cannot be served, or nil when it can.
    static func refusal(_ capability: Csi_V1_VolumeCapability) -> String? {
        guard capability.hasAccessMode else { return "a volume capability has no access mode" }
        let mode = capability.accessMode.mode
        switch capability.accessType {
        case nil:
            return "a volume capability names neither block nor mount"
        case .block:
            return mode == .unknown ? "access mode UNKNOWN" : nil
        case .mount(let m):
            guard filesystems.contains(m.fsType) else { return "filesystem \"\(m.fsType.prefix(40))\" is not one Cairn formats (ext4, xfs)" }
            switch mode {
            case .singleNodeWriter, .singleNodeReaderOnly, .singleNodeSingleWriter, .singleNodeMultiWriter, .multiNodeReaderOnly:
                return nil
            case .multiNodeSingleWriter, .multiNodeMultiWriter:
                return "a filesystem cannot be written from several nodes (use volumeMode Block)"
            case .unknown, .UNRECOGNIZED:
                return "access mode \(mode) is not supported"
            }
        }
    }

    /// The first refusal among `capabilities`, or nil when every one can be served.
    static func refusal(_ capabilities: [Csi_V1_VolumeCapability]) -> String? {
        capabilities.lazy.compactMap { refusal($0) }.first
    }
}
