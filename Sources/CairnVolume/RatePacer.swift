import CairnIO

/// Paces a background copy (a rebuild, a resync) to a byte rate: a chunk may start only once
/// the bytes started before it fit the rate since the copy began.
struct RatePacer {
    let bytesPerSecond: UInt64
    private let start = monotonicNanos()
    private var started: UInt64 = 0

    init(bytesPerSecond: UInt64) {
        self.bytesPerSecond = max(1, bytesPerSecond)
    }

    /// Waits until `length` more bytes may start, and counts them. Runs on the caller's executor.
    nonisolated(nonsending) mutating func admit(_ length: UInt64, loop: EventLoop) async {
        let due = start &+ started * 1_000_000_000 / bytesPerSecond
        let now = monotonicNanos()
        if due > now { await loop.sleep(nanoseconds: due - now) }
        started += length
    }
}
