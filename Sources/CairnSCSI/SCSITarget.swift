import CairnBlock
import CairnIO
import Logging

/// Who a logical unit is: stable across restarts, so initiators (and multipath) recognise it.
public struct LogicalUnitIdentity: Sendable {
    /// Volume name; the serial number and NAA designator derive from it.
    public var volumeName: String
    /// The target's iSCSI name, for the SCSI name string and target port designators.
    public var targetName: String
    public var vendor: String = "CAIRN"
    public var product: String = "VOLUME"
    public var revision: String = "0001"

    public init(volumeName: String, targetName: String) {
        self.volumeName = volumeName
        self.targetName = targetName
    }
}

/// The SCSI target device: its logical units and everything SPC-4/SBC-3 says about them
/// (unit attentions, reservations, mode pages). The transport calls it with commands that have
/// all their data; it knows nothing of iSCSI. Pinned to the event loop that owns the stores.
public actor SCSITarget {
    public nonisolated let loop: EventLoop
    let logger: Logger
    let identity: LogicalUnitIdentity
    let luns: [UInt64: any BlockStore]

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        loop.serialExecutor.asUnownedSerialExecutor()
    }

    public init(loop: EventLoop, identity: LogicalUnitIdentity, luns: [UInt64: any BlockStore], logger: Logger) {
        self.loop = loop
        self.identity = identity
        self.luns = luns
        self.logger = logger
    }

    /// Executes one command. Never throws: every failure is a status with sense data.
    public func execute(_ command: SCSICommand) async -> SCSIResponse {
        // Stub until the SCSI layer lands: everything is INVALID COMMAND OPERATION CODE.
        SCSIResponse(status: .checkCondition, sense: SenseBytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0]))
    }

    /// The SCSI side of a task management function: reset state and raise unit attentions.
    /// Aborting the transport's in-flight tasks is the transport's job, done before this call.
    public func taskManagement(_ function: TaskManagementFunction, lun: UInt64, nexus: ITNexus) async -> TaskManagementResponse {
        luns[lun] == nil && function != .targetWarmReset && function != .targetColdReset ? .lunDoesNotExist : .functionComplete
    }

    /// A nexus is gone (its session ended): drop what SPC says ends with it (RESERVE(6)).
    public func nexusLost(_ nexus: ITNexus) {}

    /// Flushes and closes every store (process shutdown).
    public func close() async {
        for (_, store) in luns { await store.close() }
    }
}
