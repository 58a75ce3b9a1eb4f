import CairnBlock
import CairnIO

extension SCSITarget {
    /// UNMAP (SBC-3 5.28): every descriptor is validated before any block is deallocated.
    func unmap(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        if c.cdb[1] & 0x01 != 0 { throw .invalidField(cdbByte: 1, bit: 0) } // ANCHOR: not supported
        let listLength = Int(c.cdb.be(7, 2))
        if listLength == 0 { return .good }
        if listLength < 8 { throw .parameterListLengthError }
        guard let d = c.dataOut else { throw .parameterListLengthError }
        let avail = min(listLength, c.dataOutLength, d.count)
        if avail < 8 { throw .parameterListLengthError }
        let p = UnsafeRawBufferPointer(start: d.base, count: avail)
        // Descriptors past the data actually sent are ignored (SBC-3: a truncated list is not an error).
        let descLength = Int(be(p, 2, 2))
        let count = min(descLength, avail - 8) / 16
        if count > LogicalUnit.maxUnmapDescriptors { throw .invalidParameter(byte: 2) }
        for i in 0..<count {
            let o = 8 + i * 16
            let lba = be(p, o, 8)
            let n = be(p, o + 8, 4)
            guard lu.inRange(lba, n) else { throw .lbaOutOfRange }
            if n > LogicalUnit.maxUnmapBlocks { throw .invalidParameter(byte: o + 8) }
        }
        guard lu.store.supportsUnmap else { return .good }
        for i in 0..<count {
            let o = 8 + i * 16
            let lba = be(p, o, 8)
            let n = be(p, o + 8, 4)
            if n == 0 { continue }
            let id = await lockRange(lu, lba: lba, count: n, exclusive: false)
            defer { lu.locks.release(id) }
            do { try await lu.store.unmap(lba: lba, count: n) } catch { throw .from(error) }
        }
        return .good
    }
}

/// Big-endian field of `n` bytes at `offset`; the caller has checked the bounds.
@inline(__always)
func be(_ p: UnsafeRawBufferPointer, _ offset: Int, _ n: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<n { v = v << 8 | UInt64(p[offset + i]) }
    return v
}

/// Big-endian field of `n` bytes at `offset` of an array, zero where the array is short.
@inline(__always)
func be(_ a: [UInt8], _ offset: Int, _ n: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<n { v = v << 8 | UInt64(offset + i < a.count ? a[offset + i] : 0) }
    return v
}

extension Array where Element == UInt8 {
    /// Appends `v` as `n` big-endian bytes.
    mutating func put(_ v: UInt64, _ n: Int) {
        for i in stride(from: n - 1, through: 0, by: -1) { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    /// Stores `v` as `n` big-endian bytes at `offset` (which must be in range).
    mutating func set(_ offset: Int, _ v: UInt64, _ n: Int) {
        for i in 0..<n { self[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(n - 1 - i))) }
    }

    /// Appends `s` as ASCII, space-padded or cut to `n` bytes.
    mutating func putASCII(_ s: String, _ n: Int) {
        var k = 0
        for b in s.utf8 where k < n { append(b >= 0x20 && b < 0x7F ? b : 0x20); k += 1 }
        while k < n { append(0x20); k += 1 }
    }
}
