/// Where a volume's iSCSI target is: what stage needs to reach it.
struct ISCSITarget: Codable, Equatable, Sendable {
    var portal: String   // HOST:PORT
    var iqn: String
    var lun: Int
}

/// A volume attached to this node: the block device it appears as, and what to undo.
struct Attachment: Codable, Equatable, Sendable {
    var method: String
    var target: ISCSITarget
    var device: String
    /// userspace: the qemu-storage-daemon's pid, its QMP socket, and the FUSE file the loop device reads.
    var pid: Int32?
    var qmpSocket: String?
    var exportFile: String?
}

/// Makes an iSCSI LUN a block device on this node, and undoes it. Each method is idempotent: an
/// attach of what is attached, or a detach of what is gone, succeeds.
protocol Attacher: Sendable {
    var method: String { get }
    /// Programs the method runs.
    var tools: [String] { get }
    /// Attaches `target` for volume `volume`, keeping what it makes under `dir`. `record` is
    /// called with what is made as soon as it exists, so a later detach finds it after a crash.
    func attach(volume: String, target: ISCSITarget, readOnly: Bool, dir: String,
                record: @Sendable (Attachment) throws -> Void) async throws -> Attachment
    func detach(_ attachment: Attachment) async throws
    /// Makes the block device show the volume's new size after it grew.
    func refreshSize(_ attachment: Attachment, size: UInt64) async throws
}
