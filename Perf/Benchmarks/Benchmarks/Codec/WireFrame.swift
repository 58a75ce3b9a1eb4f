import Benchmark
import CairnIO
import CairnWire

/// The replica protocol's 4 KiB write request, as the controller builds it (Volume+IO: payload
/// CRC32C, OutFrame, header encoded into the FrameWriter's staging buffer) and as the replica
/// checks it (FrameReader: header decode with its CRC, then the payload's CRC).
func frameBenchmarks() {
    Benchmark("Frame-encode-4KiB-write") { benchmark, io in
        let payload = IOBuffer(base: io.base + 4096, count: 4096)
        let staging = io.base
        var acc: UInt32 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let lba = UInt64(i & 255)
            let frame = OutFrame(WireHeader(opcode: .write, seq: UInt64(i), epoch: 7, offset: lba * 4096, extent: 4096),
                                 data: payload, crc: wireChecksum(payload.base, payload.count), release: false)
            frame.header.encode(into: staging)
            acc &+= frame.header.payloadCRC
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    } setup: {
        Scratch(2 * 4096)
    }

    Benchmark("Frame-decode-4KiB-write") { (benchmark: Benchmark, io: Scratch) in
        let frame = io.base
        let payload = io.base + 4096
        var acc: UInt64 = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            do {
                let h = try WireHeader.decode(frame)
                guard h.opcode == .write, wireChecksum(payload, Int(h.payloadLength)) == h.payloadCRC else {
                    fatalError("frame does not check out")
                }
                acc &+= h.seq &+ h.offset
            } catch {
                fatalError("frame header refused: \(error)")
            }
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    } setup: {
        // A frame as it arrives: header at 0, its 4 KiB payload at 4096.
        let io = Scratch(2 * 4096)
        let h = WireHeader(opcode: .write, seq: 42, epoch: 7, offset: 8192, extent: 4096, payloadLength: 4096,
                           payloadCRC: wireChecksum(io.base + 4096, 4096))
        h.encode(into: io.base)
        return io
    }
}
