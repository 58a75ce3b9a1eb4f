import CairnIO
import DequeModule

/// A volume's QoS limits: IOPS and bytes per second, each for reads, writes, or both together
/// (SPDK's six bdev QoS knobs), with a burst allowance. nil is no limit.
public struct QoSLimits: Codable, Sendable, Equatable {
    public var iops: UInt64?
    public var readIOPS: UInt64?
    public var writeIOPS: UInt64?
    /// Bytes per second.
    public var bandwidth: UInt64?
    public var readBandwidth: UInt64?
    public var writeBandwidth: UInt64?
    /// How long a limit's worth an idle volume may save up and spend above the limit.
    public var burstSeconds: Double

    public static let defaultBurstSeconds = 1.0

    public init(iops: UInt64? = nil, readIOPS: UInt64? = nil, writeIOPS: UInt64? = nil, bandwidth: UInt64? = nil,
                readBandwidth: UInt64? = nil, writeBandwidth: UInt64? = nil,
                burstSeconds: Double = QoSLimits.defaultBurstSeconds) {
        self.iops = iops
        self.readIOPS = readIOPS
        self.writeIOPS = writeIOPS
        self.bandwidth = bandwidth
        self.readBandwidth = readBandwidth
        self.writeBandwidth = writeBandwidth
        self.burstSeconds = burstSeconds
    }

    /// The six limits in `QoSKind` order.
    public var byKind: [UInt64?] { [iops, readIOPS, writeIOPS, bandwidth, readBandwidth, writeBandwidth] }
    public var isUnlimited: Bool { byKind.allSatisfy { $0 == nil } }

    /// One line for logs: the limits set, e.g. `write_iops=2000 burst=1.0s`, or `none`.
    public var summary: String {
        let set = zip(QoSKind.allCases, byKind).compactMap { k, v in v.map { "\(k.rawValue)=\($0)" } }
        return set.isEmpty ? "none" : (set + ["burst=\(burstSeconds)s"]).joined(separator: " ")
    }

    /// Why these limits cannot be used, or nil.
    public func validate() -> String? {
        for (k, v) in zip(QoSKind.allCases, byKind) where v == 0 {
            return "\(k.rawValue) must be positive (leave it out for no limit)"
        }
        guard burstSeconds.isFinite, burstSeconds >= 0, burstSeconds <= 3600 else {
            return "burst must be between 0 and 3600 seconds"
        }
        return nil
    }
}

/// The six limits, as `/metrics` labels them (`cairn_qos_limit{kind}`).
public enum QoSKind: String, CaseIterable, Sendable {
    case iops, readIOPS = "read_iops", writeIOPS = "write_iops"
    case bandwidth, readBandwidth = "read_bandwidth", writeBandwidth = "write_bandwidth"
}

/// What the limiter did so far (the API and /metrics).
public struct QoSStatus: Sendable {
    public var limits: QoSLimits
    /// Commands waiting now.
    public var queueDepth: Int
    /// Commands that had to wait, and the time they waited, summed.
    public var throttledCommands: UInt64
    public var throttledNanos: UInt64
}

/// A token bucket: `rate` tokens a second, at most `capacity` saved. A command may take more
/// than is there (a large I/O against a small limit), leaving a debt that later ones wait out.
struct TokenBucket {
    let rate: Double
    let capacity: Double
    var tokens: Double
    var last: UInt64

    init(rate: UInt64, burstSeconds: Double, full: Bool, now: UInt64) {
        self.rate = Double(rate)
        // At least one second's hundredth, so a burst of 0 still lets the next token through.
        capacity = max(Double(rate) * burstSeconds, Double(rate) / 100, 1)
        tokens = full ? capacity : 0
        last = now
    }

    mutating func refill(_ now: UInt64) {
        guard now > last else { return }
        tokens = min(capacity, tokens + Double(now - last) * rate / 1e9)
        last = now
    }

    /// A command of `cost` may go once this much is saved (all of it, or a full bucket).
    func ready(_ cost: Double) -> Bool { tokens >= min(cost, capacity) }

    /// Nanoseconds until `ready(cost)`.
    func wait(_ cost: Double) -> UInt64 {
        let need = min(cost, capacity) - tokens
        return need <= 0 ? 0 : UInt64((need / rate * 1e9).rounded(.up))
    }
}

/// Throttles a volume's commands to its `QoSLimits`. A command over the limit waits in one FIFO
/// queue shared by every session, so no session can starve another; it is never failed or
/// busied. A read waiting only for the write limit (or the reverse) does not hold up the other
/// direction. Large I/Os count their bytes and one I/O per 128 KiB or part.
///
/// Owned by the `SCSITarget` actor (touched only on it: no locks), which runs its timer: when a
/// call returns a delay, the owner calls `timerFired()` that much later. With no limit, `admit`
/// is one branch on `active`.
final class QoSLimiter {
    enum Direction { case read, write }

    struct Waiter {
        var direction: Direction
        var ios: Double
        var bytes: Double
        var since: UInt64
        /// Whose command it is: an aborted one leaves the queue (`cancel`).
        var nexus: ITNexus
        var tag: UInt32
        /// Resumed with true to run, false when cancelled.
        var continuation: UnsafeContinuation<Bool, Never>
    }

    static let ioUnit = 128 << 10

    private(set) var limits = QoSLimits()
    private(set) var active = false
    /// Indexed by `QoSKind`'s order; nil where there is no limit.
    private var buckets: [TokenBucket?] = Array(repeating: nil, count: 6)
    private var queue = Deque<Waiter>()
    /// A timer is set (the owner will call `timerFired`).
    private var timerSet = false
    private(set) var throttledCommands: UInt64 = 0
    private(set) var throttledNanos: UInt64 = 0

    init(limits: QoSLimits = QoSLimits()) {
        _ = set(limits, initial: true)
    }

    var status: QoSStatus {
        QoSStatus(limits: limits, queueDepth: queue.count, throttledCommands: throttledCommands, throttledNanos: throttledNanos)
    }

    /// New limits, in effect for the next command and for those waiting now. A limit that
    /// changes starts with an empty bucket (no burst right after a change); one that stays the
    /// same keeps what it saved. Returns a timer to set, if any (see `pump`).
    func set(_ new: QoSLimits, initial: Bool = false) -> UInt64? {
        let now = monotonicNanos()
        let old = limits
        for (i, rate) in new.byKind.enumerated() {
            guard let rate else { buckets[i] = nil; continue }
            if !initial, old.byKind[i] == rate, old.burstSeconds == new.burstSeconds, buckets[i] != nil { continue }
            // At start the bucket is full: the burst of an idle volume.
            buckets[i] = TokenBucket(rate: rate, burstSeconds: new.burstSeconds, full: initial, now: now)
        }
        limits = new
        active = !new.isUnlimited
        return pump()
    }

    /// The owner's timer went off.
    func timerFired() -> UInt64? {
        timerSet = false
        return pump()
    }

    /// Waits until a command moving `bytes` may run (true), or until it is cancelled (false);
    /// `setTimer` is called (before the wait) with the delay after which the owner must call
    /// `timerFired`.
    nonisolated(nonsending)
    func throttle(_ direction: Direction, bytes: Int, nexus: ITNexus, tag: UInt32, setTimer: (UInt64) -> Void) async -> Bool {
        let ios = Double(max(1, (bytes + Self.ioUnit - 1) / Self.ioUnit))
        let b = Double(bytes)
        let now = monotonicNanos()
        if queue.isEmpty {
            refill(now)
            if ready(direction, ios, b) {
                take(direction, ios, b)
                return true
            }
        }
        return await withUnsafeContinuation { (c: UnsafeContinuation<Bool, Never>) in
            queue.append(Waiter(direction: direction, ios: ios, bytes: b, since: now, nexus: nexus, tag: tag, continuation: c))
            if let delay = pump() { setTimer(delay) }
        }
    }

    /// Takes `nexus`'s waiting commands with these tags (all of them for nil) out of the queue:
    /// they were aborted, and an ABORT TASK must not wait for their turn at the limit.
    func cancel(nexus: ITNexus, tags: Set<UInt32>?) -> UInt64? {
        var i = 0
        var cancelled = false
        while i < queue.count {
            let w = queue[i]
            if w.nexus == nexus && (tags?.contains(w.tag) ?? true) {
                queue.remove(at: i)
                w.continuation.resume(returning: false)
                cancelled = true
            } else {
                i += 1
            }
        }
        // Those behind them may go now.
        return cancelled ? pump() : nil
    }

    private func refill(_ now: UInt64) {
        for i in buckets.indices { buckets[i]?.refill(now) }
    }

    /// The buckets a command of `direction` draws from: IOPS (both, own), bytes (both, own).
    private func indices(_ d: Direction) -> (Int, Int, Int, Int) { d == .read ? (0, 1, 3, 4) : (0, 2, 3, 5) }

    private func ready(_ d: Direction, _ ios: Double, _ bytes: Double) -> Bool {
        let (a, b, c, e) = indices(d)
        return (buckets[a]?.ready(ios) ?? true) && (buckets[b]?.ready(ios) ?? true)
            && (buckets[c]?.ready(bytes) ?? true) && (buckets[e]?.ready(bytes) ?? true)
    }

    private func wait(_ d: Direction, _ ios: Double, _ bytes: Double) -> UInt64 {
        let (a, b, c, e) = indices(d)
        return max(buckets[a]?.wait(ios) ?? 0, buckets[b]?.wait(ios) ?? 0,
                   buckets[c]?.wait(bytes) ?? 0, buckets[e]?.wait(bytes) ?? 0)
    }

    private func take(_ d: Direction, _ ios: Double, _ bytes: Double) {
        let (a, b, c, e) = indices(d)
        buckets[a]?.tokens -= ios
        buckets[b]?.tokens -= ios
        buckets[c]?.tokens -= bytes
        buckets[e]?.tokens -= bytes
    }

    /// Lets waiting commands go, oldest first; the first of each direction that cannot go holds
    /// up the later ones of its direction only. Returns when to look again, unless a timer is
    /// already set or nothing waits.
    private func pump() -> UInt64? {
        guard !queue.isEmpty else { return nil }
        let now = monotonicNanos()
        refill(now)
        var blocked = (read: false, write: false)
        var nextWake = UInt64.max
        var i = 0
        while i < queue.count {
            let w = queue[i]
            let isBlocked = w.direction == .read ? blocked.read : blocked.write
            if isBlocked { i += 1; continue }
            if !active || ready(w.direction, w.ios, w.bytes) {
                if active { take(w.direction, w.ios, w.bytes) }
                queue.remove(at: i)
                throttledCommands += 1
                throttledNanos &+= now &- w.since
                w.continuation.resume(returning: true)
                continue
            }
            nextWake = min(nextWake, wait(w.direction, w.ios, w.bytes))
            if w.direction == .read { blocked.read = true } else { blocked.write = true }
            if blocked.read && blocked.write { break }
            i += 1
        }
        guard !queue.isEmpty, !timerSet else { return nil }
        timerSet = true
        // Not sooner than 50 µs: at high limits one wake-up lets a batch go.
        return max(nextWake == .max ? 1_000_000 : nextWake, 50_000)
    }
}

/// Which commands QoS counts, and how: reads (and VERIFY, which reads the medium) by the blocks
/// their CDB names; writes of every kind (WRITE, WRITE AND VERIFY, WRITE SAME, UNMAP, COMPARE AND
/// WRITE, ORWRITE, WRITE ATOMIC) by the data the initiator sent. Everything else (INQUIRY,
/// SYNCHRONIZE CACHE, EXTENDED COPY, ...) is not throttled.
enum QoSCost {
    /// 0: not counted; 1: a read; 2: a write.
    private static let table: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 256)
        for op in [Opcode.read6, Opcode.read10, Opcode.read12, Opcode.read16, Opcode.verify10, Opcode.verify12, Opcode.verify16] {
            t[Int(op)] = 1
        }
        for op in [Opcode.write6, Opcode.write10, Opcode.write12, Opcode.write16, Opcode.writeVerify10, Opcode.writeVerify12,
                   Opcode.writeVerify16, Opcode.writeSame10, Opcode.writeSame16, Opcode.unmap, Opcode.compareAndWrite,
                   Opcode.orWrite16, Opcode.writeAtomic16] {
            t[Int(op)] = 2
        }
        return t
    }()

    @inline(__always)
    static func of(_ c: SCSICommand, blockSize: Int) -> (QoSLimiter.Direction, Int)? {
        switch table[Int(c.cdb.opcode)] {
        case 1:
            // Clamped: a CDB asking for more than a transfer can be is refused anyway.
            let blocks = min(BlockRange.decode(c.cdb).count, UInt64(LogicalUnit.maxTransferBytes / blockSize))
            return (.read, Int(blocks) * blockSize)
        case 2:
            return (.write, c.dataOutLength)
        default:
            return nil
        }
    }
}
