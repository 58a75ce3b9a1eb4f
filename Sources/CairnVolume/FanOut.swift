import CairnWire

/// Collects the replies of one request sent to several replicas, then resumes its one waiter.
/// Each link completes its slot from the loop thread; no task per replica.
final class FanOut {
    private(set) var results: [WireStatus?]
    private var remaining: Int
    private var waiter: UnsafeContinuation<Void, Never>?

    init(count: Int) {
        results = [WireStatus?](repeating: nil, count: count)
        remaining = count
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
