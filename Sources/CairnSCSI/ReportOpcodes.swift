import CairnBlock
import CairnIO

/// One supported command for REPORT SUPPORTED OPERATION CODES: its CDB usage map, whose first
/// byte is the opcode and whose length is the CDB length.
struct SupportedCommand {
    var serviceAction: UInt16?
    var usage: [UInt8]
    var opcode: UInt8 { usage[0] }
}

enum CommandTable {
    static let ff4: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
    static let ff8: [UInt8] = ff4 + ff4

    static func rw10(_ op: UInt8, _ flags: UInt8) -> [UInt8] { [op, flags] + ff4 + [0x1F, 0xFF, 0xFF, 0x00] }
    static func rw12(_ op: UInt8, _ flags: UInt8) -> [UInt8] { [op, flags] + ff4 + ff4 + [0x1F, 0x00] }
    static func rw16(_ op: UInt8, _ flags: UInt8) -> [UInt8] { [op, flags] + ff8 + ff4 + [0x1F, 0x00] }

    static let all: [SupportedCommand] = {
        var t: [SupportedCommand] = []
        func add(_ usage: [UInt8], _ sa: UInt16? = nil) { t.append(SupportedCommand(serviceAction: sa, usage: usage)) }
        add([0x00, 0, 0, 0, 0, 0])
        add([0x03, 0x01, 0, 0, 0xFF, 0])
        add([0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0])
        add([0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0])
        add([0x12, 0x01, 0xFF, 0xFF, 0xFF, 0])
        add([0x15, 0x11, 0, 0, 0xFF, 0])
        add([0x16, 0, 0, 0, 0, 0])
        add([0x17, 0, 0, 0, 0, 0])
        add([0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0])
        add([0x1B, 0x01, 0, 0x0F, 0xF7, 0])
        add([0x1D, 0xF7, 0, 0xFF, 0xFF, 0])
        add([0x1E, 0, 0, 0, 0x03, 0])
        add([0x25, 0] + ff4 + [0, 0, 0x01, 0])
        add(rw10(0x28, 0xFE))
        add(rw10(0x2A, 0xFA))
        add(rw10(0x2E, 0xF2))
        add(rw10(0x2F, 0xF6))
        add([0x34, 0x02] + ff4 + [0x1F, 0xFF, 0xFF, 0])
        add([0x35, 0x06] + ff4 + [0x1F, 0xFF, 0xFF, 0])
        add(rw10(0x41, 0xF8))
        add([0x42, 0x01, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0])
        add([0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0])
        add([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        add([0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        add([0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0])
        for sa: UInt16 in 0...3 { add([0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], sa) }
        for sa: UInt16 in 0...6 { add([0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0], sa) }
        add(rw16(0x88, 0xFE))
        add([0x89, 0xF8] + ff8 + [0, 0, 0, 0xFF, 0x1F, 0])
        add(rw16(0x8A, 0xFA))
        add(rw16(0x8B, 0xF8))
        add([0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0])
        add([0xB7, 0x1F, 0, 0, 0, 0] + ff4 + [0, 0])
        add(rw16(0x8E, 0xF2))
        add(rw16(0x8F, 0xF6))
        add([0x90, 0x02] + ff8 + ff4 + [0x1F, 0])
        add([0x91, 0x06] + ff8 + ff4 + [0x1F, 0])
        add(rw16(0x93, 0xF9))
        add([0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0] + ff4 + [0, 0], 0x00)
        for sa: UInt16 in [0x00, 0x03] { add([0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0] + ff4 + [0, 0], sa) }
        add([0x9C, 0xF8] + ff8 + [0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0])
        for sa: UInt16 in [0x01, 0x02, 0x1F] { add([0x48, 0x9F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], sa) }
        add([0x9E, 0x1F] + ff8 + ff4 + [0, 0], 0x10)
        add([0x9E, 0x1F] + ff8 + ff4 + [0, 0], 0x12)
        add([0xA0, 0, 0xFF, 0, 0, 0] + ff4 + [0, 0])
        add([0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF] + ff4 + [0, 0], 0x0C)
        add(rw12(0xA8, 0xFE))
        add(rw12(0xAA, 0xFA))
        add(rw12(0xAE, 0xF2))
        add(rw12(0xAF, 0xF6))
        return t
    }()
}

extension SCSITarget {
    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), all commands or one, with timeouts
    /// descriptors when RCTD is set.
    func reportSupportedOpcodes(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let rctd = c.cdb[2] & 0x80 != 0
        let options = c.cdb[2] & 0x07
        let reqOp = c.cdb[3]
        let reqSA = UInt16(c.cdb.be(4, 2))
        let alloc = Int(c.cdb.be(6, 4))
        let table = CommandTable.all
        var d: [UInt8] = []
        func timeouts() -> [UInt8] {
            // Nominal and recommended timeouts in seconds: none to speak of.
            var t: [UInt8] = [0x00, 0x0A, 0, 0]
            t.put(0, 4)
            t.put(30, 4)
            return t
        }
        switch options {
        case 0:
            d = [0, 0, 0, 0]
            for e in table {
                d.append(e.opcode)
                d.append(0)
                d.put(UInt64(e.serviceAction ?? 0), 2)
                d.append(0)
                d.append((rctd ? 0x02 : 0) | (e.serviceAction != nil ? 0x01 : 0))
                d.put(UInt64(e.usage.count), 2)
                if rctd { d.append(contentsOf: timeouts()) }
            }
            d.set(0, UInt64(d.count - 4), 4)
        case 1, 2, 3:
            let hasSA = table.contains { $0.opcode == reqOp && $0.serviceAction != nil }
            if options == 1 && hasSA { throw .invalidField(cdbByte: 2, bit: 2) }
            if options == 2 && !hasSA && table.contains(where: { $0.opcode == reqOp }) { throw .invalidField(cdbByte: 2, bit: 2) }
            let match = table.first { $0.opcode == reqOp && (hasSA ? $0.serviceAction == reqSA : true) }
            if let m = match {
                d = [0, (rctd ? 0x80 : 0) | 0x03]
                d.put(UInt64(m.usage.count), 2)
                d.append(contentsOf: m.usage)
                if rctd { d.append(contentsOf: timeouts()) }
            } else {
                d = [0, 0x01, 0, 0] // not supported
            }
        default:
            throw .invalidField(cdbByte: 2, bit: 2)
        }
        return dataIn(d, allocation: alloc)
    }
}
