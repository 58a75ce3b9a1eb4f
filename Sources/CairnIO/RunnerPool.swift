/// Long-lived tasks that take work items one at a time, for an actor that would otherwise
/// create a Swift task per item (per SCSI command, per replica request). Creating a task
/// allocates several times (the task, its closure, slabs for its async frames); waking a parked
/// runner allocates nothing, and its frames reuse the slabs it already has.
///
/// Owned by one actor (a stored property) and used only from its isolation, like this:
///
///     func submit(_ w: Work) {
///         if runners.submit(w) { loop.spawn { await self.runWork() } }
///     }
///     func runWork() async {
///         var next = runners.firstWork()
///         while let w = next {
///             await serve(w)
///             next = await withUnsafeContinuation { runners.park($0) }
///         }
///         runners.runnerEnded()
///     }
///
/// Runners are created only when none is parked, so there are never more than the most items
/// ever in progress at once. Items start in the order they are submitted: a resumed runner and
/// a new one are both jobs queued behind the work already runnable, in order.
///
/// Inlinable, so each user's module specializes it for its `Work`: unspecialized, every call
/// looked up the generic metadata of its arrays and continuations in the runtime's caches
/// (3% of a replica's CPU, 2% of a controller's, in `perf record` at queue depth 32).
public struct RunnerPool<Work: Sendable> {
    @usableFromInline var idle: [UnsafeContinuation<Work?, Never>] = []
    @usableFromInline var unstarted: [Work?] = []  // taken ones set to nil, so the pool holds no reference
    @usableFromInline var unstartedHead = 0
    @usableFromInline var runners = 0
    @usableFromInline var isStopped = false
    /// Runners alive: busy or parked.
    @inlinable public var count: Int { runners }
    @inlinable public var stopped: Bool { isStopped }

    @inlinable public init() {}

    /// Hands `work` to a parked runner. True when there is none: the caller must spawn a runner,
    /// which takes the work with `firstWork()`.
    @inlinable public mutating func submit(_ work: Work) -> Bool {
        if let r = idle.popLast() {
            r.resume(returning: work)
            return false
        }
        unstarted.append(work)
        runners += 1
        return true
    }

    /// The work a new runner was spawned for.
    @inlinable public mutating func firstWork() -> Work? {
        guard unstartedHead < unstarted.count else { return nil }
        let w = unstarted[unstartedHead].take()
        unstartedHead += 1
        if unstartedHead == unstarted.count {
            unstarted.removeAll(keepingCapacity: true)
            unstartedHead = 0
        }
        return w
    }

    /// Call from `withUnsafeContinuation` between items: the runner sleeps until the next
    /// `submit`, or gets nil (its cue to end) once the pool is stopped.
    @inlinable public mutating func park(_ c: UnsafeContinuation<Work?, Never>) {
        if isStopped { c.resume(returning: nil) } else { idle.append(c) }
    }

    @inlinable public mutating func runnerEnded() { runners -= 1 }

    /// Every parked runner ends, and so does each busy one when it next parks.
    @inlinable public mutating func stop() {
        isStopped = true
        let parked = idle
        idle = []
        for r in parked { r.resume(returning: nil) }
    }
}
