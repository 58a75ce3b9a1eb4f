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

/// Where the control byte is, by CDB group (the opcode's top three bits).
@inline(__always)
func controlByteOffset(_ op: UInt8) -> Int {
    switch op >> 5 {
    case 0: return 5
    case 1, 2: return 9
    case 5: return 11
    case 4: return 15
    default: return 15   // groups 3, 6, 7: variable or vendor specific; the last byte we hold
    }
}

/// Operation codes this target implements.
enum Opcode {
    static let testUnitReady: UInt8 = 0x00
    static let requestSense: UInt8 = 0x03
    static let read6: UInt8 = 0x08
    static let write6: UInt8 = 0x0A
    static let inquiry: UInt8 = 0x12
    static let modeSelect6: UInt8 = 0x15
    static let reserve6: UInt8 = 0x16
    static let release6: UInt8 = 0x17
    static let modeSense6: UInt8 = 0x1A
    static let startStopUnit: UInt8 = 0x1B
    static let sendDiagnostic: UInt8 = 0x1D
    static let preventAllow: UInt8 = 0x1E
    static let readCapacity10: UInt8 = 0x25
    static let read10: UInt8 = 0x28
    static let write10: UInt8 = 0x2A
    static let writeVerify10: UInt8 = 0x2E
    static let verify10: UInt8 = 0x2F
    static let prefetch10: UInt8 = 0x34
    static let syncCache10: UInt8 = 0x35
    static let writeSame10: UInt8 = 0x41
    static let unmap: UInt8 = 0x42
    static let modeSelect10: UInt8 = 0x55
    static let reserve10: UInt8 = 0x56
    static let release10: UInt8 = 0x57
    static let modeSense10: UInt8 = 0x5A
    static let persistentReserveIn: UInt8 = 0x5E
    static let persistentReserveOut: UInt8 = 0x5F
    static let read16: UInt8 = 0x88
    static let compareAndWrite: UInt8 = 0x89
    static let write16: UInt8 = 0x8A
    static let writeVerify16: UInt8 = 0x8E
    static let verify16: UInt8 = 0x8F
    static let prefetch16: UInt8 = 0x90
    static let syncCache16: UInt8 = 0x91
    static let writeSame16: UInt8 = 0x93
    static let serviceActionIn16: UInt8 = 0x9E
    static let reportLuns: UInt8 = 0xA0
    static let maintenanceIn: UInt8 = 0xA3
    static let read12: UInt8 = 0xA8
    static let write12: UInt8 = 0xAA
    static let writeVerify12: UInt8 = 0xAE
    static let verify12: UInt8 = 0xAF
    static let sanitize: UInt8 = 0x48
    static let writeAtomic16: UInt8 = 0x9C
    static let extendedCopy: UInt8 = 0x83
    static let receiveCopyResults: UInt8 = 0x84
    static let orWrite16: UInt8 = 0x8B
    static let readDefectData10: UInt8 = 0x37
    static let readDefectData12: UInt8 = 0xB7

    // Service actions.
    static let saReadCapacity16: UInt8 = 0x10
    static let saGetLBAStatus: UInt8 = 0x12
    static let saReportSupportedOpcodes: UInt8 = 0x0C
}

/// Which commands need the medium: those that read, write or describe it (SBC-3 4.x). With the
/// medium ejected they get NOT READY / MEDIUM NOT PRESENT; every other command (INQUIRY, MODE
/// SENSE/SELECT, reservations, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, REPORT SUPPORTED
/// OPERATION CODES, ... and unknown opcodes, which stay INVALID COMMAND OPERATION CODE) runs as usual.
enum MediumPresence {
    private static let table: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for op in [Opcode.testUnitReady, Opcode.read6, Opcode.write6, Opcode.readCapacity10, Opcode.read10, Opcode.write10,
                   Opcode.writeVerify10, Opcode.verify10, Opcode.prefetch10, Opcode.syncCache10, Opcode.writeSame10,
                   Opcode.unmap, Opcode.read16, Opcode.compareAndWrite, Opcode.write16, Opcode.writeVerify16,
                   Opcode.verify16, Opcode.prefetch16, Opcode.syncCache16, Opcode.writeSame16, Opcode.serviceActionIn16,
                   Opcode.read12, Opcode.write12, Opcode.writeVerify12, Opcode.verify12, Opcode.sanitize,
                   Opcode.writeAtomic16, Opcode.extendedCopy, Opcode.orWrite16, Opcode.readDefectData10,
                   Opcode.readDefectData12] {
            t[Int(op)] = true
        }
        return t
    }()

    @inline(__always)
    static func needsMedium(_ op: UInt8) -> Bool { table[Int(op)] }
}

/// The SCSI target device: its logical units and everything SPC-4/SBC-3 says about them
/// (unit attentions, reservations, mode pages). The transport calls it with commands that have
/// all their data; it knows nothing of iSCSI. Pinned to the event loop that owns the stores.
///
/// What the transport does around it:
/// - `execute` may be called concurrently for many commands (it is reentrant across store I/O);
///   the command's `lun` may be a LUN number or the raw 8-byte LUN field of the PDU.
/// - `dataOut` holds what the initiator sent (`dataOutLength` bytes); only whole blocks of it are
///   written. The buffer is the caller's and is not kept after `execute` returns.
/// - A response's `dataIn` comes from `loop.buffers`: give it back on the loop once sent. Send
///   min(`dataInLength`, EDTL) bytes; read residuals are the transport's.
/// - Write residuals: compare the EDTL with `expectedDataOutLength` (what the CDB called for).
/// - Task management: abort the transport's own tasks first, then call `taskManagement` (LU and
///   target resets raise the unit attentions, drop RESERVE(6) and end preventions of medium
///   removal); call `nexusLost` when a session (I_T nexus) ends.
public actor SCSITarget {
    public nonisolated let loop: EventLoop
    let logger: Logger
    let identity: LogicalUnitIdentity
    let luns: [UInt64: any BlockStore]
    /// The units, sorted by LUN; a short array is faster to search than a dictionary per command.
    let units: [LogicalUnit]
    /// EXTENDED COPY results, for RECEIVE COPY RESULTS.
    var copyResults: [CopyResult] = []
    /// The volume's QoS limits, over every unit and session.
    let qos: QoSLimiter

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        loop.serialExecutor.asUnownedSerialExecutor()
    }

    /// SANITIZE OVERWRITE runs in the background at most this fast (bytes/s), so overwriting a
    /// large volume does not take the node's disk from every other volume on it.
    let sanitizeBytesPerSecond: UInt64

    /// `options` applies to every unit (removable medium, write protection, physical block size);
    /// it must pass `LogicalUnitOptions.validate` for each store's block size.
    public init(loop: EventLoop, identity: LogicalUnitIdentity, luns: [UInt64: any BlockStore], logger: Logger,
                sanitizeBytesPerSecond: UInt64 = 64 << 20, options: LogicalUnitOptions = LogicalUnitOptions(),
                qos: QoSLimits = QoSLimits()) {
        self.loop = loop
        self.qos = QoSLimiter(limits: qos)
        self.sanitizeBytesPerSecond = max(1 << 20, sanitizeBytesPerSecond)
        self.identity = identity
        self.luns = luns
        self.logger = logger
        self.units = luns.sorted { $0.key < $1.key }.map {
            LogicalUnit(lun: $0.key, store: $0.value, identity: identity, options: options)
        }
    }

    /// The unit addressed by `lun`: either a LUN number or the raw 8-byte LUN field of the PDU.
    @inline(__always)
    func unit(_ lun: UInt64) -> LogicalUnit? {
        let n = decodeLUN(lun)
        for u in units where u.lun == n { return u }
        return nil
    }

    /// Executes one command. Never throws: every failure is a status with sense data.
    public func execute(_ command: SCSICommand) async -> SCSIResponse {
        // Store calls are nonisolated(nonsending): they run here, on the loop, with no hop.
        await run(command)
    }

    private func run(_ command: SCSICommand) async -> SCSIResponse {
        guard let lu = unit(command.lun) else { return noSuchUnit(command) }
        // Throttled before the checks below: they see the unit as it is when the command runs.
        if qos.active, let (direction, bytes) = QoSCost.of(command, blockSize: lu.blockSize) {
            let go = await qos.throttle(direction, bytes: bytes, nexus: command.nexus, tag: command.taskTag) { setQoSTimer($0) }
            // Aborted while it waited: it never ran (the transport drops this answer).
            guard go else { return SCSIError(.abortedCommand, 0x00, 0x00).response(descriptor: lu.mode.dSense) }
        }
        var response: SCSIResponse
        do {
            try admit(lu, command)
            response = try await dispatch(lu, command)
        } catch {
            response = error.response(descriptor: lu.mode.dSense)
        }
        response.expectedDataOutLength = dataOutLength(of: command.cdb, blockSize: lu.blockSize)
        return response
    }

    /// What stops a command before it runs: a pending unit attention (SAM-5 5.14), a SANITIZE in
    /// progress, a reservation held by another nexus, an ejected medium. INQUIRY, REPORT LUNS and
    /// REQUEST SENSE pass the first two; only media-access commands need the medium.
    @inline(__always)
    private func admit(_ lu: LogicalUnit, _ command: SCSICommand) throws(SCSIError) {
        let op = command.cdb.opcode
        lu.unitAttentions.see(command.nexus)
        // NACA in the control byte: ACA is not supported (SAM-5 5.9.1.2).
        if command.cdb[controlByteOffset(op)] & 0x04 != 0 { throw .invalidField(cdbByte: controlByteOffset(op), bit: 2) }
        let always = op == Opcode.inquiry || op == Opcode.reportLuns || op == Opcode.requestSense
        if lu.unitAttentions.count > 0 && !always, let c = lu.unitAttentions.take(for: command.nexus) {
            throw SCSIError(.unitAttention, c.asc, c.ascq)
        }
        if lu.sanitizing > 0 && !always { throw .sanitizeInProgress }
        if lu.reservedBy != nil || lu.pr.reservation != nil, reservationConflict(lu, command) {
            throw .reservationConflict
        }
        if !lu.mediumPresent && MediumPresence.needsMedium(op) { throw .mediumNotPresent }
    }

    private func dispatch(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        switch c.cdb.opcode {
        // The hot path first.
        case Opcode.read10, Opcode.read16, Opcode.read12, Opcode.read6:
            return try await read(lu, c)
        case Opcode.write10, Opcode.write16, Opcode.write12, Opcode.write6:
            if lu.writeProtected { throw .writeProtected }
            return try await write(lu, c, verify: false)
        case Opcode.writeVerify10, Opcode.writeVerify12, Opcode.writeVerify16:
            if lu.writeProtected { throw .writeProtected }
            return try await write(lu, c, verify: true)
        case Opcode.testUnitReady:
            if let e = await lu.store.readiness() { throw SCSIError.from(e) }
            return .good
        case Opcode.inquiry:
            return try inquiry(lu, c)
        case Opcode.reportLuns:
            return try reportLuns(c)
        case Opcode.requestSense:
            return try requestSense(lu, c)
        case Opcode.readCapacity10:
            return try readCapacity10(lu, c)
        case Opcode.serviceActionIn16:
            switch c.cdb[1] & 0x1F {
            case Opcode.saReadCapacity16: return try readCapacity16(lu, c)
            case Opcode.saGetLBAStatus: return try await getLBAStatus(lu, c)
            default: throw .invalidField(cdbByte: 1, bit: 4)
            }
        case Opcode.verify10, Opcode.verify12, Opcode.verify16:
            return try await verify(lu, c)
        case Opcode.syncCache10, Opcode.syncCache16:
            return try await synchronizeCache(lu, c)
        case Opcode.writeSame10, Opcode.writeSame16:
            if lu.writeProtected { throw .writeProtected }
            return try await writeSame(lu, c)
        case Opcode.unmap:
            if lu.writeProtected { throw .writeProtected }
            return try await unmap(lu, c)
        case Opcode.compareAndWrite:
            if lu.writeProtected { throw .writeProtected }
            return try await compareAndWrite(lu, c)
        case Opcode.orWrite16:
            if lu.writeProtected { throw .writeProtected }
            return try await orWrite(lu, c)
        case Opcode.readDefectData10, Opcode.readDefectData12:
            return try readDefectData(lu, c)
        case Opcode.writeAtomic16:
            if lu.writeProtected { throw .writeProtected }
            return try await writeAtomic(lu, c)
        case Opcode.sanitize:
            if lu.writeProtected { throw .writeProtected }
            return try await sanitize(lu, c)
        case Opcode.extendedCopy:
            return try await extendedCopy(lu, c)
        case Opcode.receiveCopyResults:
            return try receiveCopyResults(lu, c)
        case Opcode.prefetch10, Opcode.prefetch16:
            return try prefetch(lu, c)
        case Opcode.modeSense6, Opcode.modeSense10:
            return try modeSense(lu, c)
        case Opcode.modeSelect6, Opcode.modeSelect10:
            return try modeSelect(lu, c)
        case Opcode.startStopUnit:
            return try await startStopUnit(lu, c)
        case Opcode.preventAllow:
            return try preventAllow(lu, c)
        case Opcode.sendDiagnostic:
            return try sendDiagnostic(lu, c)
        case Opcode.reserve6, Opcode.reserve10:
            return try reserve(lu, c)
        case Opcode.release6, Opcode.release10:
            return try release(lu, c)
        case Opcode.persistentReserveIn:
            return try persistentReserveIn(lu, c)
        case Opcode.persistentReserveOut:
            return try persistentReserveOut(lu, c)
        case Opcode.maintenanceIn:
            guard c.cdb[1] & 0x1F == Opcode.saReportSupportedOpcodes else { throw .invalidField(cdbByte: 1, bit: 4) }
            return try reportSupportedOpcodes(lu, c)
        default:
            throw .invalidOpcode
        }
    }

    /// A command addressed to a LUN we do not have: SPC-4 4.6.
    private func noSuchUnit(_ c: SCSICommand) -> SCSIResponse {
        switch c.cdb.opcode {
        case Opcode.inquiry:
            do { return try inquiry(nil, c) } catch { return error.response(descriptor: false) }
        case Opcode.reportLuns:
            do { return try reportLuns(c) } catch { return error.response(descriptor: false) }
        case Opcode.requestSense:
            let desc = c.cdb[1] & 0x01 != 0
            let sense = SCSIError.lunNotSupported.sense(descriptor: desc)
            return dataIn(sense.array, allocation: Int(c.cdb[4]))
        default:
            return SCSIError.lunNotSupported.response(descriptor: false)
        }
    }

    /// Copies `bytes` (up to the allocation length) into a pool buffer for the data-in phase.
    func dataIn(_ bytes: [UInt8], allocation: Int) -> SCSIResponse {
        let n = min(bytes.count, max(allocation, 0))
        guard n > 0 else { return .good }
        let buf = loop.buffers.take(n)
        bytes.withUnsafeBytes { src in
            if let p = src.baseAddress { buf.base.copyMemory(from: p, byteCount: n) }
        }
        return SCSIResponse(status: .good, dataIn: buf, dataInLength: n)
    }

    // MARK: - Simple commands

    /// START STOP UNIT (SBC-3). There is no motor: a power condition other than 0 is
    /// accepted and START and LOEJ are then ignored, as SBC-3 says; START alone changes nothing
    /// (a stop without NO_FLUSH flushes the cache first). LOEJ moves the medium: on a fixed medium
    /// it is refused; on a removable one START=0 ejects it (after a flush unless NO_FLUSH) and
    /// START=1 loads it. While any nexus prevents medium removal both are refused with MEDIUM
    /// REMOVAL PREVENTED: SBC-3 names the unload; the load is refused too, the prevention keeping
    /// the medium (and the tray) where it is, which is what libiscsi's PreventAllow.Eject expects.
    /// IMMED changes nothing: the command is done when it returns either way.
    private func startStopUnit(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let b4 = c.cdb[4]
        let powerCondition = b4 >> 4
        let noFlush = b4 & 0x04 != 0
        let loej = b4 & 0x02 != 0
        let start = b4 & 0x01 != 0
        if powerCondition != 0 { return .good }
        if loej {
            guard lu.removable else { throw .invalidField(cdbByte: 4, bit: 1) }
            if !lu.preventers.isEmpty { throw .mediumRemovalPrevented }
            if start {
                // The same medium comes back (nothing can change it while it is out), so no
                // NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED unit attention.
                lu.mediumPresent = true
                return .good
            }
            if lu.mediumPresent && !noFlush {
                do { try await lu.store.flush() } catch { throw .from(error) }
                // A PREVENT may have arrived while the flush ran (the actor is reentrant).
                if !lu.preventers.isEmpty { throw .mediumRemovalPrevented }
            }
            lu.mediumPresent = false
            return .good
        }
        if !start && !noFlush && lu.mediumPresent {
            do { try await lu.store.flush() } catch { throw .from(error) }
        }
        return .good
    }

    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-3). On a fixed medium there is nothing to prevent and
    /// the command is accepted as is. On a removable one PREVENT 01b records this nexus as
    /// preventing removal and 00b withdraws its prevention (another nexus's stays); 10b and 11b
    /// are obsolete in SBC-3 (MMC's persistent prevent) and refused.
    private func preventAllow(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        guard lu.removable else { return .good }
        switch c.cdb[4] & 0x03 {
        case 0x00: lu.preventers.remove(c.nexus)
        case 0x01: lu.preventers.insert(c.nexus)
        default: throw .invalidField(cdbByte: 4, bit: 1)
        }
        return .good
    }

    /// SEND DIAGNOSTIC: the default self-test (SELFTEST=1) or a short/extended self-test code
    /// passes at once (there is no hardware to test); diagnostic pages are not supported.
    private func sendDiagnostic(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let selfTest = c.cdb[1] & 0x04 != 0
        let code = c.cdb[1] >> 5
        if c.cdb.be(3, 2) != 0 { throw .invalidField(cdbByte: 3) }
        if selfTest && code != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        if !selfTest && !(1...2).contains(code) && !(5...6).contains(code) { throw .invalidField(cdbByte: 1, bit: 2) }
        return .good
    }

    private func prefetch(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let is16 = c.cdb.opcode == Opcode.prefetch16
        let lba = is16 ? c.cdb.be(2, 8) : c.cdb.be(2, 4)
        let n = is16 ? c.cdb.be(10, 4) : c.cdb.be(7, 2)
        guard lu.inRange(lba, n) else { throw .lbaOutOfRange }
        // No cache of our own to load: SBC-3 says GOOD when the blocks will not all be held
        // in cache (CONDITION MET promises they will).
        return .good
    }

    private func synchronizeCache(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let is16 = c.cdb.opcode == Opcode.syncCache16
        let lba = is16 ? c.cdb.be(2, 8) : c.cdb.be(2, 4)
        let n = is16 ? c.cdb.be(10, 4) : c.cdb.be(7, 2)
        guard lu.inRange(lba, n) else { throw .lbaOutOfRange }
        do { try await lu.store.flush() } catch { throw .from(error) }
        return .good
    }

    // MARK: - Task management and nexus lifetime

    /// The SCSI side of a task management function: reset state and raise unit attentions.
    /// Aborting the transport's in-flight tasks is the transport's job, done before this call.
    public func taskManagement(_ function: TaskManagementFunction, lun: UInt64, nexus: ITNexus) async -> TaskManagementResponse {
        switch function {
        case .targetWarmReset, .targetColdReset:
            let ascq: UInt8 = function == .targetColdReset ? 0x01 : 0x03
            for lu in units { resetUnit(lu, asc: 0x29, ascq: ascq) }
            return .functionComplete
        default:
            break
        }
        guard let lu = unit(lun) else { return .lunDoesNotExist }
        switch function {
        case .logicalUnitReset:
            resetUnit(lu, asc: 0x29, ascq: 0x03)
            return .functionComplete
        case .abortTask, .abortTaskSet:
            return .functionComplete
        case .clearTaskSet:
            // Tasks of other nexuses were cleared: tell them (TAS=0).
            lu.unitAttentions.raiseAll(0x2F, 0x00, except: nexus)
            return .functionComplete
        case .clearACA:
            // NACA is not supported, so there is never an ACA to clear.
            return .functionRejected
        case .targetWarmReset, .targetColdReset:
            return .functionComplete
        }
    }

    /// LU reset (and so target warm and cold reset): RESERVE(6) reservations end, persistent
    /// reservations survive (SPC-4 5.12.1), every prevention of medium removal ends (SBC-3,
    /// PREVENT ALLOW MEDIUM REMOVAL; a removed medium stays out), every nexus gets a unit attention.
    private func resetUnit(_ lu: LogicalUnit, asc: UInt8, ascq: UInt8) {
        lu.reservedBy = nil
        lu.preventers.removeAll()
        lu.unitAttentions.raiseAll(asc, ascq)
    }

    /// A nexus is gone (its session ended, by logout or by losing its connection): drop what SPC
    /// says ends with it (RESERVE(6), its prevention of medium removal), and its pending unit
    /// attentions. Registrations persist (SPC-4 5.13.1).
    public func nexusLost(_ nexus: ITNexus) {
        cancelThrottled(nexus: nexus, tags: nil)
        for lu in units {
            if lu.reservedBy == nexus { lu.reservedBy = nil }
            lu.preventers.remove(nexus)
            lu.unitAttentions.forget(nexus)
        }
    }

    /// The store under `lun` has `blockCount` blocks now (an online grow): READ CAPACITY answers
    /// that from the next command, and every I_T nexus gets CAPACITY DATA HAS CHANGED (SPC-4).
    public func capacityChanged(lun: UInt64, blockCount: UInt64) {
        guard let lu = unit(lun), lu.blockCount != blockCount else { return }
        logger.notice("LUN \(lun): capacity \(lu.blockCount) -> \(blockCount) blocks of \(lu.blockSize) bytes")
        lu.blockCount = blockCount
        lu.unitAttentions.raiseAll(0x2A, 0x09)
    }

    // MARK: - QoS

    /// New QoS limits, for the commands waiting now and every later one.
    public func setQoS(_ limits: QoSLimits) {
        if let delay = qos.set(limits) { setQoSTimer(delay) }
    }

    public func qosStatus() -> QoSStatus { qos.status }

    /// Commands of `nexus` waiting for the QoS limit with these task tags (every one for nil)
    /// are dropped: the transport aborted them, or the nexus is gone.
    public func cancelThrottled(nexus: ITNexus, tags: Set<UInt32>?) {
        if let delay = qos.cancel(nexus: nexus, tags: tags) { setQoSTimer(delay) }
    }

    private func setQoSTimer(_ delay: UInt64) {
        loop.spawn {
            await self.loop.sleep(nanoseconds: delay)
            await self.qosTimerFired()
        }
    }

    private func qosTimerFired() {
        if let delay = qos.timerFired() { setQoSTimer(delay) }
    }

    /// Flushes and closes every store (process shutdown).
    public func close() async {
        for (_, store) in luns { await store.close() }
    }
}
