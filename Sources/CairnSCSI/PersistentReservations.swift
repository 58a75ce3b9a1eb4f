import CairnBlock
import CairnIO

/// Persistent reservation types (SPC-4 6.15.2).
enum PRType: UInt8 {
    case writeExclusive = 1, exclusiveAccess = 3
    case writeExclusiveRegistrantsOnly = 5, exclusiveAccessRegistrantsOnly = 6
    case writeExclusiveAllRegistrants = 7, exclusiveAccessAllRegistrants = 8

    var allRegistrants: Bool { self == .writeExclusiveAllRegistrants || self == .exclusiveAccessAllRegistrants }
    var registrantsOnly: Bool { self == .writeExclusiveRegistrantsOnly || self == .exclusiveAccessRegistrantsOnly }
}

/// Registrations and the reservation of one logical unit. Not persisted across restarts
/// (PTPL_C = 0; APTPL is refused).
struct PersistentReservationState {
    struct Registration { var nexus: ITNexus; var key: UInt64 }
    struct Reservation { var holder: ITNexus; var type: PRType }

    var registrations: [Registration] = []
    var reservation: Reservation?
    var generation: UInt32 = 0

    func key(of nexus: ITNexus) -> UInt64? {
        for r in registrations where r.nexus == nexus { return r.key }
        return nil
    }

    /// Whether `nexus` holds the reservation: for the all-registrants types every registrant does.
    func isHolder(_ nexus: ITNexus, _ r: Reservation) -> Bool {
        r.type.allRegistrants ? key(of: nexus) != nil : r.holder == nexus
    }

    /// Whether `nexus` may access the medium under `r` (SPC-4 table of reservation types).
    func hasAccess(_ nexus: ITNexus, _ r: Reservation) -> Bool {
        if isHolder(nexus, r) { return true }
        if r.type.registrantsOnly || r.type.allRegistrants { return key(of: nexus) != nil }
        return false
    }
}

extension SCSITarget {
    // MARK: PERSISTENT RESERVE IN

    func persistentReserveIn(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let sa = c.cdb[1] & 0x1F
        let alloc = Int(c.cdb.be(7, 2))
        let pr = lu.pr
        var d: [UInt8] = []
        switch sa {
        case 0x00: // READ KEYS
            d.put(UInt64(pr.generation), 4)
            d.put(UInt64(pr.registrations.count * 8), 4)
            for r in pr.registrations { d.put(r.key, 8) }
        case 0x01: // READ RESERVATION
            d.put(UInt64(pr.generation), 4)
            if let r = pr.reservation {
                d.put(16, 4)
                // All-registrants reservations report key 0.
                d.put(r.type.allRegistrants ? 0 : (pr.key(of: r.holder) ?? 0), 8)
                d.put(0, 4)
                d.append(0)
                d.append(r.type.rawValue) // scope LU (0) in the high nibble
                d.put(0, 2)
            } else {
                d.put(0, 4)
            }
        case 0x02: // REPORT CAPABILITIES
            d.put(8, 2)
            d.append(0x00)        // CRH 0 (RESERVE/RELEASE conflict with any registration); no SIP_C/ATP_C/PTPL_C
            d.append(0x80)        // TMV: the type mask below is valid
            // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
            d.append(0x80 | 0x40 | 0x20 | 0x08 | 0x02)
            d.append(0x01)
            d.put(0, 2)
        case 0x03: // READ FULL STATUS
            d.put(UInt64(pr.generation), 4)
            d.put(0, 4)
            for reg in pr.registrations {
                var e: [UInt8] = []
                e.put(reg.key, 8)
                e.put(0, 4)
                var flags: UInt8 = 0
                if let r = pr.reservation, pr.isHolder(reg.nexus, r) { flags |= 0x01 } // R_HOLDER
                e.append(flags)
                e.append(pr.reservation.map { pr.isHolder(reg.nexus, $0) ? $0.type.rawValue : 0 } ?? 0)
                e.put(0, 4)
                e.put(UInt64(max(reg.nexus.portalGroupTag, 1)), 2) // relative target port
                let tid = transportID(reg.nexus)
                e.put(UInt64(tid.count), 4)
                e.append(contentsOf: tid)
                d.append(contentsOf: e)
            }
            d.set(4, UInt64(d.count - 8), 4)
        default:
            throw .invalidField(cdbByte: 1, bit: 4)
        }
        return dataIn(d, allocation: alloc)
    }

    /// iSCSI TransportID, initiator port format (SPC-4 7.6.4.6).
    func transportID(_ nexus: ITNexus) -> [UInt8] {
        var name = Array((nexus.initiatorName + ",i,0x" + hex(nexus.isid, digits: 12)).utf8.prefix(220))
        name.append(0)
        while name.count % 4 != 0 { name.append(0) }
        var d: [UInt8] = [0x40 | 0x05, 0]
        d.put(UInt64(name.count), 2)
        d.append(contentsOf: name)
        return d
    }

    // MARK: PERSISTENT RESERVE OUT

    func persistentReserveOut(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let sa = c.cdb[1] & 0x1F
        let scope = c.cdb[2] >> 4
        let typeField = c.cdb[2] & 0x0F
        let listLength = Int(c.cdb.be(5, 4))
        guard sa <= 0x06 else { throw .invalidField(cdbByte: 1, bit: 4) } // REGISTER AND MOVE (7): not supported
        if listLength != 24 { throw .parameterListLengthError }
        guard let data = c.dataOut, min(c.dataOutLength, data.count) >= 24 else { throw .parameterListLengthError }
        let p = UnsafeRawBufferPointer(start: data.base, count: 24)
        let key = be(p, 0, 8)
        let saKey = be(p, 8, 8)
        let flags = p[20]
        if flags & 0x08 != 0 { throw .invalidParameter(byte: 20, bit: 3) } // SPEC_I_PT
        if flags & 0x04 != 0 { throw .invalidParameter(byte: 20, bit: 2) } // ALL_TG_PT
        if flags & 0x01 != 0 { throw .invalidParameter(byte: 20, bit: 0) } // APTPL: nothing is persisted
        let nexus = c.nexus
        let registered = lu.pr.key(of: nexus)

        switch sa {
        case 0x00, 0x06: // REGISTER, REGISTER AND IGNORE EXISTING KEY
            let ignore = sa == 0x06
            guard let current = registered else {
                if !ignore && key != 0 { throw .reservationConflict }
                // Unregistering a nexus that is not registered changes nothing.
                if saKey == 0 { return .good }
                lu.pr.registrations.append(.init(nexus: nexus, key: saKey))
                lu.pr.generation &+= 1
                return .good
            }
            if !ignore && key != current { throw .reservationConflict }
            if saKey == 0 {
                unregister(lu, nexus)
            } else if let i = lu.pr.registrations.firstIndex(where: { $0.nexus == nexus }) {
                lu.pr.registrations[i].key = saKey
            }
            lu.pr.generation &+= 1
            return .good

        case 0x01: // RESERVE
            guard let current = registered, current == key else { throw .reservationConflict }
            if scope != 0 { throw .invalidField(cdbByte: 2, bit: 7) }
            guard let type = PRType(rawValue: typeField) else { throw .invalidField(cdbByte: 2, bit: 3) }
            if let r = lu.pr.reservation {
                if lu.pr.isHolder(nexus, r) && r.type == type { return .good }
                throw .reservationConflict
            }
            lu.pr.reservation = .init(holder: nexus, type: type)
            return .good

        case 0x02: // RELEASE
            guard let current = registered, current == key else { throw .reservationConflict }
            guard let r = lu.pr.reservation, lu.pr.isHolder(nexus, r) else { return .good }
            if scope != 0 || typeField != r.type.rawValue { throw .invalidReleaseOfPR }
            lu.pr.reservation = nil
            if r.type.registrantsOnly || r.type.allRegistrants {
                for reg in lu.pr.registrations where reg.nexus != nexus {
                    lu.unitAttentions.raise(0x2A, 0x04, for: reg.nexus) // RESERVATIONS RELEASED
                }
            }
            return .good

        case 0x03: // CLEAR
            guard let current = registered, current == key else { throw .reservationConflict }
            for reg in lu.pr.registrations where reg.nexus != nexus {
                lu.unitAttentions.raise(0x2A, 0x03, for: reg.nexus) // RESERVATIONS PREEMPTED
            }
            lu.pr.registrations.removeAll()
            lu.pr.reservation = nil
            lu.pr.generation &+= 1
            return .good

        default: // 0x04 PREEMPT, 0x05 PREEMPT AND ABORT (aborting tasks is the transport's part)
            guard let current = registered, current == key else { throw .reservationConflict }
            if scope != 0 { throw .invalidField(cdbByte: 2, bit: 7) }
            guard let type = PRType(rawValue: typeField) else { throw .invalidField(cdbByte: 2, bit: 3) }
            try preempt(lu, nexus, saKey: saKey, type: type)
            lu.pr.generation &+= 1
            return .good
        }
    }

    /// Removes a registration; the reservation goes with it if it was its holder's (for the
    /// all-registrants types, only with the last registrant).
    private func unregister(_ lu: LogicalUnit, _ nexus: ITNexus) {
        lu.pr.registrations.removeAll { $0.nexus == nexus }
        guard let r = lu.pr.reservation else { return }
        if r.type.allRegistrants {
            if lu.pr.registrations.isEmpty { lu.pr.reservation = nil }
        } else if r.holder == nexus {
            lu.pr.reservation = nil
            if r.type.registrantsOnly {
                for reg in lu.pr.registrations {
                    lu.unitAttentions.raise(0x2A, 0x04, for: reg.nexus) // RESERVATIONS RELEASED
                }
            }
        }
    }

    /// PREEMPT (SPC-4 5.13.11.4).
    private func preempt(_ lu: LogicalUnit, _ nexus: ITNexus, saKey: UInt64, type: PRType) throws(SCSIError) {
        func removeRegistrations(where match: (PersistentReservationState.Registration) -> Bool) -> Int {
            var removed = 0
            lu.pr.registrations.removeAll { reg in
                guard reg.nexus != nexus, match(reg) else { return false }
                lu.unitAttentions.raise(0x2A, 0x05, for: reg.nexus) // REGISTRATIONS PREEMPTED
                removed += 1
                return true
            }
            return removed
        }
        guard let r = lu.pr.reservation else {
            // No reservation: just remove the registrations with that key.
            if saKey == 0 { throw .invalidParameter(byte: 8) }
            if removeRegistrations(where: { $0.key == saKey }) == 0 { throw .reservationConflict }
            return
        }
        if r.type.allRegistrants {
            if saKey == 0 {
                // Everyone else goes; the reservation becomes ours, with the new type.
                _ = removeRegistrations(where: { _ in true })
                lu.pr.reservation = .init(holder: nexus, type: type)
            } else if removeRegistrations(where: { $0.key == saKey }) == 0 {
                throw .reservationConflict
            }
            return
        }
        let holderKey = lu.pr.key(of: r.holder)
        if holderKey == saKey {
            // Preempting the holder: its registrations go, we hold with the new type. Others
            // still registered learn their reservation changed.
            _ = removeRegistrations(where: { $0.key == saKey })
            lu.pr.reservation = .init(holder: nexus, type: type)
            if r.type != type || r.holder != nexus {
                for reg in lu.pr.registrations where reg.nexus != nexus {
                    lu.unitAttentions.raise(0x2A, 0x03, for: reg.nexus) // RESERVATIONS PREEMPTED
                }
            }
        } else {
            if saKey == 0 { throw .invalidParameter(byte: 8) }
            if removeRegistrations(where: { $0.key == saKey }) == 0 { throw .reservationConflict }
        }
    }
}
