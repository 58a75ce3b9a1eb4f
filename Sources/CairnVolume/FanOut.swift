import CairnWire

/// Collects the replies of one request sent to several replicas, then resumes its one waiter.
/// Each link completes its slot from the loop thread; no task per replica. The write path
/// reuses them (`Volume.takeFanOut`): one per write would be two allocations per I/O.
final class FanOut {
    private(set) var results: [WireStatus?] = []
    /// The members the request went to, by slot.
    var targets: [Member] = []
    private var remaining = 0
    private var waiter: UnsafeContinuation<Void, Never>?

    init(count: Int = 0) {
        arm(count: count)
    }

    /// Expects `count` replies (the arrays keep their capacity).
    func arm(count: Int) {
        results.removeAll(keepingCapacity: true)
        for _ in 0..<count { results.append(nil) }
        remaining = count
    }

    /// Arms for one reply from each of `targets`.
    func armForTargets() { arm(count: targets.count) }

    /// Forgets the last request (its members too), ready for reuse.
    func clear() {
        precondition(remaining == 0 && waiter == nil, "clearing a fan-out still waiting for replies")
        targets.removeAll(keepingCapacity: true)
        results.removeAll(keepingCapacity: true)
    }

    func complete(_ slot: Int, _ status: WireStatus) {
        guard results[slot] == nil else { return }
        results[slot] = status
        remaining -= 1
        if remaining == 0, let w = waiter {
            waiter = nil
            w.resume()
        }
    }

    /// Waits for every slot. The check runs inside the continuation body, so a reply that lands
    /// between a check and the suspension cannot be lost.
    nonisolated(nonsending) func wait() async {
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            if remaining == 0 { c.resume() } else { waiter = c }
        }
    }
}
