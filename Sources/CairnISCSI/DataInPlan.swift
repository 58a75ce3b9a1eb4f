/// How a read's data leaves: Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength,
/// grouped in sequences of at most MaxBurstLength (F bit at the end of each). An iterator, so
/// the hot path allocates nothing.
struct DataInSplitter: Sequence, IteratorProtocol {
    struct Segment: Equatable {
        var offset: Int
        var length: Int
        /// F bit: the last PDU of a sequence (burst).
        var final: Bool
        /// The last PDU of the command.
        var last: Bool
    }

    let total: Int
    let maxSegment: Int
    let maxBurst: Int
    var offset = 0
    var inBurst = 0

    init(total: Int, maxSegment: Int, maxBurst: Int) {
        self.total = Swift.max(0, total)
        self.maxSegment = Swift.max(512, maxSegment)
        self.maxBurst = Swift.max(512, maxBurst)
    }

    mutating func next() -> Segment? {
        guard offset < total else { return nil }
        let n = Swift.min(maxSegment, total - offset, maxBurst - inBurst)
        let last = offset + n == total
        inBurst += n
        let final = last || inBurst == maxBurst
        if final { inBurst = 0 }
        defer { offset += n }
        return Segment(offset: offset, length: n, final: final, last: last)
    }
}

/// Residual counts (§11.4.5): what the command wanted to move against what the initiator expected.
struct Residual: Equatable {
    var overflow = false
    var underflow = false
    var count: UInt32 = 0

    init() {}

    init(wanted: UInt64, expected: UInt64) {
        if wanted > expected {
            overflow = true
            count = UInt32(clamping: wanted - expected)
        } else if wanted < expected {
            underflow = true
            count = UInt32(clamping: expected - wanted)
        }
    }
}
