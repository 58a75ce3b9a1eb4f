/// In-flight block ranges of one logical unit. Writes hold shared entries (overlapping plain
/// writes are unordered among themselves, as SAM allows for SIMPLE tasks); COMPARE AND WRITE holds
/// an exclusive one, so no write can land between its read and its write. Waiters are served in
/// arrival order, so a stream of writes cannot starve a COMPARE AND WRITE.
///
/// Used only from one actor (the SCSI target, the replicated volume); actor methods are
/// reentrant across awaits, which is exactly why this exists.
public struct RangeLock: Sendable {
    public struct Entry: Sendable {
        public var id: UInt64
        public var lba: UInt64
        public var end: UInt64
        public var exclusive: Bool
    }
    public struct Waiter: Sendable {
        var entry: Entry
        var continuation: CheckedContinuation<Void, Never>
    }

    public private(set) var held: [Entry] = []
    public private(set) var waiting: [Waiter] = []
    private var nextID: UInt64 = 1

    public init() {}

    public var isIdle: Bool { held.isEmpty && waiting.isEmpty }

    @inline(__always)
    static func conflict(_ a: Entry, _ b: Entry) -> Bool {
        (a.exclusive || b.exclusive) && a.lba < b.end && b.lba < a.end
    }

    private func blocked(_ e: Entry, waitersBefore limit: Int) -> Bool {
        for h in held where RangeLock.conflict(h, e) { return true }
        var i = 0
        while i < limit {
            if RangeLock.conflict(waiting[i].entry, e) { return true }
            i += 1
        }
        return false
    }

    /// Takes the range at once if nothing conflicts; returns the entry id, or nil plus the entry
    /// to wait with.
    public mutating func tryAcquire(lba: UInt64, count: UInt64, exclusive: Bool) -> (id: UInt64, granted: Bool, entry: Entry) {
        let id = nextID
        nextID &+= 1
        let e = Entry(id: id, lba: lba, end: lba &+ max(count, 1), exclusive: exclusive)
        if !blocked(e, waitersBefore: waiting.count) {
            held.append(e)
            return (id, true, e)
        }
        return (id, false, e)
    }

    /// Parks `e`, unless a release since `tryAcquire` already cleared its way: then it takes the
    /// range and goes on at once (otherwise no later release might ever wake it).
    public mutating func enqueue(_ e: Entry, _ c: CheckedContinuation<Void, Never>) {
        if !blocked(e, waitersBefore: waiting.count) {
            held.append(e)
            c.resume()
            return
        }
        waiting.append(Waiter(entry: e, continuation: c))
    }

    /// Releases `id` and resumes every waiter that may now go.
    public mutating func release(_ id: UInt64) {
        if let i = held.firstIndex(where: { $0.id == id }) { held.remove(at: i) }
        var i = 0
        while i < waiting.count {
            let w = waiting[i]
            if !blocked(w.entry, waitersBefore: i) {
                waiting.remove(at: i)
                held.append(w.entry)
                w.continuation.resume()
            } else {
                i += 1
            }
        }
    }
}

