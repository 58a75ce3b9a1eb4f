import CairnBlock
import CairnIO

/// What a SANITIZE does, decoded and copied out of the data-out (which the transport takes back
/// when the command returns, possibly before an IMMED sanitize ends).
enum SanitizeJob: Sendable {
    case overwrite(pattern: [UInt8], passes: Int, invert: Bool)
    case blockErase
}

extension SCSITarget {
    /// SANITIZE (SBC-3 5.30): OVERWRITE writes the initialization pattern over every block,
    /// BLOCK ERASE deallocates every block (they then read zeros), EXIT FAILURE MODE is a no-op
    /// (a sanitize here never ends in the failure mode). CRYPTOGRAPHIC ERASE is not supported.
    /// While one runs, commands other than INQUIRY, REPORT LUNS and REQUEST SENSE get
    /// NOT READY / SANITIZE IN PROGRESS. With IMMED the command returns at once and the
    /// sanitize goes on in the background; it is never aborted (SBC-3: it survives resets).
    func sanitize(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let immed = c.cdb[1] & 0x80 != 0
        if c.cdb[1] & 0x40 != 0 { throw .invalidField(cdbByte: 1, bit: 6) }
        for i in 2...6 where c.cdb[i] != 0 { throw .invalidField(cdbByte: i) }
        let sa = c.cdb[1] & 0x1F
        let listLength = Int(c.cdb.be(7, 2))
        let bs = lu.blockSize
        let job: SanitizeJob
        switch sa {
        case 0x01:
            guard listLength > 4, listLength <= bs + 4 else { throw .invalidField(cdbByte: 7) }
            guard let d = c.dataOut, min(c.dataOutLength, d.count) >= listLength else { throw .parameterListLengthError }
            let p = UnsafeRawBufferPointer(start: d.base, count: listLength)
            let passes = Int(p[0] & 0x1F)
            let patternLength = Int(be(p, 2, 2))
            // libiscsi expects these parameter errors as INVALID FIELD IN CDB.
            guard passes > 0 else { throw .invalidFieldInCDB }
            guard patternLength > 0, patternLength <= bs, patternLength <= listLength - 4 else { throw .invalidFieldInCDB }
            job = .overwrite(pattern: Array(p[4..<(4 + patternLength)]), passes: passes, invert: p[0] & 0x80 != 0)
        case 0x02:
            if listLength != 0 { throw .invalidField(cdbByte: 7) }
            guard lu.store.supportsUnmap else { throw .invalidField(cdbByte: 1, bit: 4) }
            job = .blockErase
        case 0x1F:
            if listLength != 0 { throw .invalidField(cdbByte: 7) }
            return .good
        default:
            throw .invalidField(cdbByte: 1, bit: 4)
        }
        lu.sanitizing += 1
        if immed {
            Task { _ = try? await self.runSanitize(lu, job) }
            return .good
        }
        return try await runSanitize(lu, job)
    }

    private func runSanitize(_ lu: LogicalUnit, _ job: SanitizeJob) async throws(SCSIError) -> SCSIResponse {
        defer { lu.sanitizing -= 1 }
        // Wait for writes in flight; new ones are already refused (sanitizing > 0).
        let id = await lockRange(lu, lba: 0, count: lu.blockCount, exclusive: true)
        defer { lu.locks.release(id) }
        switch job {
        case .blockErase:
            do { try await lu.store.unmap(lba: 0, count: lu.blockCount) } catch { throw .from(error) }
        case .overwrite(let pattern, let passes, let invert):
            let bs = lu.blockSize
            let chunkBlocks = Int(min(lu.blockCount, UInt64(max(1, (1 << 20) / bs))))
            let chunk = loop.buffers.take(chunkBlocks * bs)
            defer { loop.buffers.give(chunk) }
            for pass in 0..<passes {
                // Each block holds the pattern repeated; INVERT flips it on alternate passes.
                let flip: UInt8 = invert && pass % 2 == 1 ? 0xFF : 0
                for i in 0..<(chunkBlocks * bs) {
                    chunk.base.storeBytes(of: pattern[(i % bs) % pattern.count] ^ flip, toByteOffset: i, as: UInt8.self)
                }
                var at: UInt64 = 0
                let started = monotonicNanos()
                while at < lu.blockCount {
                    let k = Int(min(lu.blockCount - at, UInt64(chunkBlocks)))
                    do { try await lu.store.write(lba: at, count: k, from: chunk.slice(0, k * bs), fua: false) } catch { throw .from(error) }
                    at += UInt64(k)
                    // Paced: sleep until the bytes written so far are due at the configured rate.
                    let due = started &+ at &* UInt64(bs) &* 1_000_000_000 / sanitizeBytesPerSecond
                    let now = monotonicNanos()
                    if due > now { await loop.sleep(nanoseconds: due - now) }
                }
            }
            do { try await lu.store.flush() } catch { throw .from(error) }
        }
        return .good
    }
}
