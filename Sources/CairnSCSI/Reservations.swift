import CairnBlock
import CairnIO

/// How a command touches the medium, for the reservation conflict tables (SPC-4 5.13.1,
/// SBC-3 4.17).
enum MediumAccess {
    /// Allowed whatever the reservation: INQUIRY, REPORT LUNS, REQUEST SENSE, READ CAPACITY...
    case none
    /// Reads: conflict under the exclusive-access types for nexuses without access.
    case read
    /// Writes and everything else: conflict for nexuses without access under every type.
    case write

    static func of(_ cdb: CDB) -> MediumAccess {
        switch cdb.opcode {
        case Opcode.inquiry, Opcode.reportLuns, Opcode.requestSense, Opcode.testUnitReady,
             Opcode.readCapacity10, Opcode.persistentReserveIn, Opcode.persistentReserveOut:
            return .none
        case Opcode.serviceActionIn16:
            return cdb[1] & 0x1F == Opcode.saReadCapacity16 ? .none : .read
        case Opcode.maintenanceIn:
            return cdb[1] & 0x1F == Opcode.saReportSupportedOpcodes ? .none : .read
        case Opcode.receiveCopyResults:
            return .read
        case Opcode.read6, Opcode.read10, Opcode.read12, Opcode.read16,
             Opcode.verify10, Opcode.verify12, Opcode.verify16,
             Opcode.prefetch10, Opcode.prefetch16, Opcode.modeSense6, Opcode.modeSense10,
             Opcode.readDefectData10, Opcode.readDefectData12:
            return .read
        default:
            return .write
        }
    }
}

extension SCSITarget {
    /// True if the command must end in RESERVATION CONFLICT.
    func reservationConflict(_ lu: LogicalUnit, _ c: SCSICommand) -> Bool {
        let op = c.cdb.opcode
        if let holder = lu.reservedBy, holder != c.nexus {
            // SPC-2 reservation held by another nexus: only these pass (SPC-4 table of commands
            // allowed with RESERVE(6)); RELEASE from a non-holder is a harmless GOOD.
            switch op {
            case Opcode.inquiry, Opcode.reportLuns, Opcode.requestSense, Opcode.release6, Opcode.release10:
                return false
            case Opcode.maintenanceIn:
                return c.cdb[1] & 0x1F != Opcode.saReportSupportedOpcodes
            default:
                return true
            }
        }
        guard let r = lu.pr.reservation else { return false }
        let access = MediumAccess.of(c.cdb)
        if access == .none { return false }
        if lu.pr.hasAccess(c.nexus, r) { return false }
        // Nexuses without access: writes conflict under every type; reads under the
        // exclusive-access ones.
        switch r.type {
        case .writeExclusive, .writeExclusiveRegistrantsOnly, .writeExclusiveAllRegistrants:
            return access == .write
        case .exclusiveAccess, .exclusiveAccessRegistrantsOnly, .exclusiveAccessAllRegistrants:
            return true
        }
    }

    /// RESERVE(6)/(10), SPC-2 style, LU scope only.
    func reserve(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        if c.cdb.opcode == Opcode.reserve10 && c.cdb[1] & 0x12 != 0 { throw .invalidField(cdbByte: 1, bit: 4) } // 3RDPTY, LONGID
        if c.cdb.opcode == Opcode.reserve6 && c.cdb[1] & 0x01 != 0 { throw .invalidField(cdbByte: 1, bit: 0) } // extents: obsolete
        // Any persistent registration makes RESERVE and RELEASE conflict (SPC-4 5.13.3, CRH=0).
        if lu.pr.reservation != nil || !lu.pr.registrations.isEmpty { throw .reservationConflict }
        if let h = lu.reservedBy, h != c.nexus { throw .reservationConflict }
        lu.reservedBy = c.nexus
        return .good
    }

    func release(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        if c.cdb.opcode == Opcode.release10 && c.cdb[1] & 0x12 != 0 { throw .invalidField(cdbByte: 1, bit: 4) }
        if lu.pr.reservation != nil || !lu.pr.registrations.isEmpty { throw .reservationConflict }
        if lu.reservedBy == c.nexus { lu.reservedBy = nil }
        return .good
    }
}
