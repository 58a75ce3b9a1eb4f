import CairnBlock

extension SCSITarget {
    /// Waits until `count` blocks at `lba` may be written (shared) or compared-and-written
    /// (exclusive); returns the id to release.
    func lockRange(_ lu: LogicalUnit, lba: UInt64, count: UInt64, exclusive: Bool) async -> UInt64 {
        let r = lu.locks.tryAcquire(lba: lba, count: count, exclusive: exclusive)
        if r.granted { return r.id }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lu.locks.enqueue(r.entry, c)
        }
        return r.id
    }
}
