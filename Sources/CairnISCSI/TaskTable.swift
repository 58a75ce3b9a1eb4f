import CairnIO
import CairnSCSI

/// One outstanding R2T: the window of the write buffer the initiator was asked to fill.
struct R2TState {
    let ttt: UInt32
    let offset: Int
    let length: Int
    var received = 0
    var nextDataSN: UInt32 = 0
}

/// A SCSI task at the transport level: from its command PDU until its response is queued.
/// Owned by the connection actor (never shared), hence a plain class.
// Confined to its connection actor: it crosses into a spawned task only to be handed straight
// back to an isolated method of that same actor, on the same loop thread.
final class ISCSITask: @unchecked Sendable {
    enum State { case collecting, executing }

    // Set per command by `begin`: the object is recycled by its connection
    // (ISCSIConnection+Runners.swift).
    private(set) var itt: UInt32 = 0
    private(set) var lun: UInt64 = 0
    private(set) var cmdSN: UInt32 = 0
    private(set) var cdb = CDB()
    private(set) var attribute = TaskAttribute.simple
    /// Expected Data Transfer Length of the write direction (0 for no data out).
    private(set) var writeLength = 0
    private(set) var readLength = 0
    /// The Expected Data Transfer Length field as sent (for write residuals).
    var edtl = 0
    var state = State.collecting
    var aborted = false
    var done = false
    /// The reader is filling `dataOut` right now: an abort must leave the buffer to it.
    var busyReading = false

    /// The whole write buffer; Data-Out payloads are read straight into it.
    var dataOut: IOBuffer?
    /// Bytes received so far (always a prefix: DataPDUInOrder and DataSequenceInOrder are Yes).
    var received = 0
    /// Unsolicited data still allowed (immediate data + unsolicited Data-Out up to FirstBurstLength).
    var unsolicitedLimit = 0
    var expectingUnsolicited = false
    var unsolicitedDataSN: UInt32 = 0
    var r2ts: [R2TState] = []
    var nextR2TOffset = 0
    var r2tSN: UInt32 = 0
    /// Woken when the task is finished (TMF and logout wait on it).
    var waiters: [CheckedContinuation<Void, Never>] = []

    /// Makes a new or finished task the given command's (a recycled one keeps its arrays'
    /// capacity: no allocation).
    func begin(itt: UInt32, lun: UInt64, cmdSN: UInt32, cdb: CDB, attribute: TaskAttribute, writeLength: Int, readLength: Int) {
        precondition(dataOut == nil && waiters.isEmpty, "reusing a task that is not finished")
        self.itt = itt
        self.lun = lun
        self.cmdSN = cmdSN
        self.cdb = cdb
        self.attribute = attribute
        self.writeLength = writeLength
        self.readLength = readLength
        edtl = 0
        state = .collecting
        aborted = false
        done = false
        busyReading = false
        received = 0
        unsolicitedLimit = 0
        expectingUnsolicited = false
        unsolicitedDataSN = 0
        r2ts.removeAll(keepingCapacity: true)
        nextR2TOffset = 0
        r2tSN = 0
    }

    var dataComplete: Bool { received >= writeLength }

    func finish() {
        done = true
        let w = waiters
        waiters = []
        for c in w { c.resume() }
    }
}

/// The connection's tasks by Initiator Task Tag, and the Target Transfer Tags of their R2Ts.
struct TaskTable {
    private(set) var byITT: [UInt32: ISCSITask] = [:]
    private var byTTT: [UInt32: UInt32] = [:]
    private var nextTTT: UInt32 = 1

    var count: Int { byITT.count }
    var all: [ISCSITask] { Array(byITT.values) }

    subscript(itt: UInt32) -> ISCSITask? { byITT[itt] }

    mutating func insert(_ t: ISCSITask) { byITT[t.itt] = t }

    /// Removes `t` (if it is still the task for its tag) and forgets its transfer tags.
    mutating func remove(_ t: ISCSITask) {
        for r in t.r2ts { byTTT[r.ttt] = nil }
        if byITT[t.itt] === t { byITT[t.itt] = nil }
    }

    mutating func newTTT(for itt: UInt32) -> UInt32 {
        var t = nextTTT
        while t == 0xffff_ffff || byTTT[t] != nil { t &+= 1 }
        nextTTT = t &+ 1
        byTTT[t] = itt
        return t
    }

    mutating func releaseTTT(_ ttt: UInt32) { byTTT[ttt] = nil }

    func task(forTTT ttt: UInt32) -> ISCSITask? {
        guard let itt = byTTT[ttt] else { return nil }
        return byITT[itt]
    }
}
