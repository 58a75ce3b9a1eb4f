import Benchmark
import CairnIO
import CairnISCSI
import CairnSCSI

/// A SCSI Command PDU header as the connection finds it in its receive buffer: WRITE(10) of
/// 8 blocks at LBA 0 with 4 KiB of immediate data (the 4 KiB random-write case).
func writeCommandHeader() -> Scratch {
    let s = Scratch(BasicHeaderSegment.size)
    var h = BasicHeaderSegment()
    h.setOpcode(.scsiCommand)
    h[1] = 0x80 | 0x20 | 0x01  // F, W, SIMPLE
    h.setDataSegmentLength(4096)
    h.setU64(8, 0)
    h.setU32(16, 1)            // ITT
    h.setU32(20, 4096)         // EDTL
    h.setU32(24, 1)            // CmdSN
    h.setU32(28, 1)            // ExpStatSN
    let cdb: [UInt8] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0]
    for (i, b) in cdb.enumerated() { h[32 + i] = b }
    h.write(to: s.base)
    return s
}

func pduBenchmarks() {
    // What ISCSIConnection.readHeader and handleSCSICommand read from a SCSI Command header.
    // The ITT changes each time so no work can be hoisted out of the loop.
    Benchmark("PDU-parse-SCSI-Command") { benchmark, input in
        let p = input.base
        var acc: UInt64 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            p.storeBytes(of: UInt32(truncatingIfNeeded: i).bigEndian, toByteOffset: 16, as: UInt32.self)
            let bhs = BasicHeaderSegment(p)
            guard bhs.opcode == .scsiCommand else { fatalError("not a SCSI Command") }
            var cdb = CDB()
            withUnsafeBytes(of: bhs.raw) { cdb = CDB($0.baseAddress! + 32, count: 16) }
            acc &+= UInt64(bhs.initiatorTaskTag) &+ UInt64(bhs.cmdSN) &+ UInt64(bhs.expStatSN) &+ bhs.lun
            acc &+= UInt64(bhs.dataSegmentLength &+ bhs.ahsLength) &+ UInt64(bhs.expectedDataTransferLength)
            acc &+= UInt64(bhs.taskAttribute) &+ (bhs.immediate ? 1 : 0) &+ (bhs.final ? 2 : 0)
            acc &+= (bhs.writeFlag ? 4 : 0) &+ (bhs.readFlag ? 8 : 0) &+ UInt64(cdb.opcode) &+ UInt64(cdb[8])
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    } setup: {
        writeCommandHeader()
    }

    // What a write's completion sends: a SCSI Response, stamped and laid into the writer's
    // staging buffer (ISCSIConnection.queueResponse + stamp, PDUWriter.flush).
    Benchmark("PDU-build-SCSI-Response") { benchmark, out in
        let p = out.base
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let sn = UInt32(truncatingIfNeeded: i)
            var h = BasicHeaderSegment.scsiResponse(itt: sn, status: 0, overflow: false, underflow: false, residual: 0,
                                                    expDataSN: 0, dataLength: 0)
            h.setU32(24, sn); h.setU32(28, sn &+ 1); h.setU32(32, sn &+ 128)  // StatSN, ExpCmdSN, MaxCmdSN
            h.setDataSegmentLength(0)
            h.write(to: p + (i & 63) * BasicHeaderSegment.size)
        }
        benchmark.stopMeasurement()
        blackHole(p.load(as: UInt8.self))
    } setup: {
        Scratch(64 * BasicHeaderSegment.size)
    }

    // What a 4 KiB read's completion sends: one Data-In carrying the status (no SCSI Response).
    Benchmark("PDU-build-Data-In-with-status") { benchmark, out in
        let p = out.base
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let sn = UInt32(truncatingIfNeeded: i)
            var h = BasicHeaderSegment.dataIn(final: true, status: 0, overflow: false, underflow: false, residual: 0, lun: 0,
                                              itt: sn, dataSN: 0, offset: 0, dataLength: 4096)
            h.setU32(24, sn); h.setU32(28, sn &+ 1); h.setU32(32, sn &+ 128)
            h.setDataSegmentLength(4096)
            h.write(to: p + (i & 63) * BasicHeaderSegment.size)
        }
        benchmark.stopMeasurement()
        blackHole(p.load(as: UInt8.self))
    } setup: {
        Scratch(64 * BasicHeaderSegment.size)
    }
}
