import CCairn
import DequeModule
import Glibc
import HeapModule
import Logging
import Synchronization

/// One thread that owns the process's file descriptors: it blocks in `epoll_wait`, drives an
/// io_uring for file I/O (whose eventfd sits in the same epoll set), runs the jobs of the actors
/// and tasks pinned to it, and fires timers.
///
/// It is both a `SerialExecutor` (for actors: connection, session, volume) and a `TaskExecutor`
/// (for `Task(executorPreference:)`), through two executor objects (the two protocols' `enqueue`
/// would clash on one). Every job, whichever way it came, runs isolated to the serial executor
/// *and* on the task executor: see `run()` for why that is sound and what it saves.
///
/// Pinning an actor to the loop is not enough on its own: a continuation resumes on the *generic*
/// executor and only then hops back to the actor. For a task with no executor preference that is
/// the global pool (two thread wake-ups, ~10 µs per I/O); for a task that prefers this loop it is
/// the loop itself. So every data-path task is created with `Task(executorPreference:
/// loop.taskExecutor)` (or `loop.spawn`), and a test counts global-pool enqueues to hold it.
///
/// Thread confinement: every `var` below except `inbox` is touched only on the loop thread.
/// That is the invariant behind `@unchecked Sendable`; `assertInLoop()` checks it in debug builds.
public final class EventLoop: @unchecked Sendable {
    public let name: String
    let id: UInt64
    let logger: Logger

    // epoll: registration ids 0 and 1 are the wake and uring eventfds; sockets get 2...
    let epfd: Int32
    let wakeFD: Int32
    let ringFD: Int32
    var ring = io_uring()
    let ringEntries: UInt32 = 512
    var sqesPending: UInt32 = 0

    // io_uring completions: user_data is an index into `ioSlots`.
    var ioSlots: [UnsafeContinuation<Int32, Never>?] = []
    var ioFree: [Int] = []
    var ioInFlight = 0
    var fileOpsQueuedCount: UInt64 = 0

    // Sockets: user data is an index into `registrations`.
    var registrations: [SocketRegistration?] = [nil, nil]
    var registrationFree: [Int] = []

    // Jobs to run in this turn (from either executor; they run the same way).
    var local = Deque<UnownedJob>()
    /// Jobs enqueued from the loop's own thread, ever: `NoGlobalHopTests` counts them to hold calls
    /// between loop actors inline and an awaited I/O to one enqueue.
    private(set) var jobsEnqueuedInLoop: UInt64 = 0
    // Resumed once the turn's jobs have run (see `afterJobs()`).
    private var afterJobsWaiters: [UnsafeContinuation<Void, Never>] = []
    private var afterJobsResuming: [UnsafeContinuation<Void, Never>] = []
    let inbox = Mutex(Inbox())

    var idlePoll: IdlePoll
    /// How idle periods ended so far (loop thread only; read through `idleStats`).
    private var idleCounts = LoopIdleStats()

    /// How the loop's idle periods ended so far, and its polling window now. Read on the loop thread.
    public var idleStats: LoopIdleStats {
        assertInLoop()
        var s = idleCounts
        s.windowNanos = idlePoll.windowNanos
        return s
    }

    var timers = Heap<TimerEntry>()
    var timerSeq: UInt64 = 0

    public let serialExecutor: LoopSerialExecutor
    public let taskExecutor: LoopTaskExecutor
    public let buffers: BufferPool

    private var thread: pthread_t?
    private let stopped = Atomic<Bool>(false)

    static let nextID = Atomic<UInt64>(1)

    struct Inbox: ~Copyable {
        var jobs: [UnownedJob] = []
        var calls: [@Sendable () -> Void] = []
        var sleeping = false
        var stopRequested = false
    }

    /// `idlePoll`: how long the loop polls before it sleeps when it runs out of work (see
    /// `IdlePoll`); off unless asked for.
    public init(name: String = "cairn-loop", logger: Logger? = nil, idlePoll: IdlePoll = .off) throws(IOError) {
        self.name = name
        self.idlePoll = idlePoll
        self.id = EventLoop.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.logger = logger ?? Logger(label: "cairn.loop")
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw IOError.errno(errno, "epoll_create1") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        ringFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0, ringFD >= 0 else { throw IOError.errno(errno, "eventfd") }
        let rc = io_uring_queue_init(ringEntries, &ring, 0)
        guard rc == 0 else { throw IOError.errno(-rc, "io_uring_queue_init") }
        guard io_uring_register_eventfd(&ring, ringFD) == 0 else { throw IOError.errno(errno, "io_uring_register_eventfd") }
        // A process started pinned keeps its io-wq workers on its CPUs too (they would otherwise
        // run anywhere and queue behind unrelated work on other CPUs).
        let pinned = ccairn_uring_follow_affinity(&ring)
        if pinned < 0 {
            self.logger.warning("io_uring io-wq affinity not set", metadata: ["errno": "\(-pinned)"])
        } else if pinned > 0 {
            self.logger.debug("io_uring io-wq follows the process's CPU affinity", metadata: ["cpus": "\(pinned)"])
        }
        serialExecutor = LoopSerialExecutor()
        taskExecutor = LoopTaskExecutor()
        buffers = BufferPool()
        serialExecutor.loop = self
        taskExecutor.loop = self
        buffers.owner = self
        // Both eventfds are edge-triggered and never read: each write makes a new edge.
        try addToEpoll(fd: wakeFD, data: 0, events: EPOLLIN.rawValue | EPOLLET.rawValue)
        try addToEpoll(fd: ringFD, data: 1, events: EPOLLIN.rawValue | EPOLLET.rawValue)
    }

    /// Starts the loop thread.
    public func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        thread = t
    }

    /// Asks the loop to stop after its current turn and waits for the thread to end.
    public func stopAndJoin() {
        inbox.withLock { $0.stopRequested = true }
        wake()
        if let t = thread { pthread_join(t, nil) }
        thread = nil
    }

    deinit {
        io_uring_queue_exit(&ring)
        close(epfd); close(wakeFD); close(ringFD)
    }

    public var inLoop: Bool { ccairn_loop_id() == id }

    @inline(__always)
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoop, "not on event loop \(name)", file: file, line: line)
    }

    // MARK: - Running work on the loop from anywhere

    /// Runs `body` on the loop thread (synchronously, as part of a loop turn).
    public func execute(_ body: @escaping @Sendable () -> Void) {
        let needWake = inbox.withLock { inbox -> Bool in
            inbox.calls.append(body)
            let w = inbox.sleeping
            inbox.sleeping = false
            return w
        }
        if needWake { wake() }
    }

    /// Runs an async body as a task that prefers this loop, and returns its value.
    public func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task(executorPreference: taskExecutor) { try await body() }.value
    }

    /// Starts a task that prefers this loop: its own code, the pinned actors it calls and the
    /// continuations it awaits all run here, with no hop to the global pool.
    @discardableResult
    public func spawn<T: Sendable>(_ body: sending @escaping () async -> T) -> Task<T, Never> {
        Task(executorPreference: taskExecutor, operation: body)
    }

    func enqueue(_ job: UnownedJob) {
        if inLoop {
            jobsEnqueuedInLoop &+= 1
            local.append(job)
            return
        }
        let needWake = inbox.withLock { inbox -> Bool in
            inbox.jobs.append(job)
            let w = inbox.sleeping
            inbox.sleeping = false
            return w
        }
        if needWake { wake() }
    }

    private func wake() {
        eventfd_write(wakeFD, 1)
    }

    // MARK: - The loop

    private func run() {
        ccairn_set_loop_id(id)
        // Thread names are at most 15 bytes; a named loop is easy to find in /proc, top and gdb.
        ccairn_set_thread_name(name)
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var cqeData = [UInt64](repeating: 0, count: 256)
        var cqeRes = [Int32](repeating: 0, count: 256)
        var calls: [@Sendable () -> Void] = []
        var stopping = false
        while true {
            // 1. Take what other threads posted.
            var taken: [UnownedJob] = []
            inbox.withLock { inbox in
                if !inbox.jobs.isEmpty { swap(&taken, &inbox.jobs) }
                if !inbox.calls.isEmpty { swap(&calls, &inbox.calls) }
                if inbox.stopRequested { stopping = true }
            }
            local.append(contentsOf: taken)
            for call in calls { call() }
            calls.removeAll(keepingCapacity: true)
            if stopping { break }

            // 2. Run jobs, including those they enqueue, up to a budget so I/O keeps flowing.
            var budget = 4096
            while budget > 0 {
                guard let job = local.popFirst() else {
                    // The turn's other work is done: now the writers that waited for it flush,
                    // each with everything queued meanwhile (one syscall for many frames).
                    if afterJobsWaiters.isEmpty { break }
                    // Swapped, not copied: a copy would make removeAll reallocate every turn.
                    swap(&afterJobsWaiters, &afterJobsResuming)
                    for c in afterJobsResuming { c.resume() }
                    afterJobsResuming.removeAll(keepingCapacity: true)
                    continue
                }
                // Every job runs isolated to the loop's serial executor and on its task executor,
                // whichever of the two it was enqueued on. Sound: the loop is one thread running
                // one job at a time, and that (not the queue a job came through) is what serializes
                // every actor pinned here. It is also what lets swift_task_switch run a call into a
                // loop actor inline, which it does only when the running job's serial executor and
                // task executor both match the task's (every data-path task prefers this loop).
                // Run by enqueue path instead, each actor-to-actor call and each resumed
                // continuation cost an enqueue and a dequeue (controller 35 per replicated write,
                // replica 17; now 3 and 2, counted with a uprobe on swift_task_enqueue).
                job.runSynchronously(isolatedTo: serialExecutor.asUnownedSerialExecutor(),
                                     taskExecutor: taskExecutor.asUnownedTaskExecutor())
                budget -= 1
            }

            // 3. One submit for every SQE queued this turn.
            flushSubmissions()

            // 4. Completions, without a syscall.
            reapCompletions(&cqeData, &cqeRes)

            // 5. Timers that are due.
            let now = monotonicNanos()
            while let first = timers.min, first.deadline <= now {
                let t = timers.removeMin()
                t.continuation.resume()
            }

            // 6. Wait for events, or just poll if there is work.
            var timeout: Int32 = 0
            if local.isEmpty && afterJobsWaiters.isEmpty {
                let hasWork = inbox.withLock { inbox -> Bool in
                    if inbox.jobs.isEmpty && inbox.calls.isEmpty && !inbox.stopRequested {
                        inbox.sleeping = true
                        return false
                    }
                    return true
                }
                if !hasWork { timeout = timeoutToNextTimer(from: now) }
            }
            let n = waitForEvents(&events, timeout: timeout, now: now)
            if timeout != 0 { inbox.withLock { $0.sleeping = false } }
            if n > 0 {
                for i in 0..<Int(n) {
                    let ev = events[i]
                    let data = ev.data.u64
                    if data == 0 { continue }
                    if data == 1 { reapCompletions(&cqeData, &cqeRes); continue }
                    if let reg = registrations[Int(data)] { reg.signal(events: ev.events) }
                }
            }
        }
        ccairn_set_loop_id(0)
    }

    /// `epoll_wait`'s timeout until the first timer from `now` (ms, rounded up), or -1 for none.
    private func timeoutToNextTimer(from now: UInt64) -> Int32 {
        guard let first = timers.min else { return -1 }
        let delta = first.deadline > now ? first.deadline - now : 0
        return Int32(min((delta + 999_999) / 1_000_000, 60_000))
    }

    /// Waits up to `timeout` ms (0: just looks) for events. An idle loop (timeout not 0) with
    /// idle polling on polls for the window first, never past the next timer, then sleeps for
    /// what is left; posters see `sleeping` and write the wake eventfd, which a poll finds like
    /// any other event.
    private func waitForEvents(_ events: inout [epoll_event], timeout: Int32, now: UInt64) -> Int32 {
        func wait(_ ms: Int32) -> Int32 {
            events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), ms) }
        }
        guard timeout != 0 && idlePoll.enabled else { return wait(timeout) }
        var pollUntil = now &+ idlePoll.windowNanos
        if let first = timers.min { pollUntil = min(pollUntil, first.deadline) }
        var n: Int32 = 0
        var t = now
        let switchedBefore = pollUntil > now ? ccairn_thread_involuntary_switches() : 0
        while n == 0 && t < pollUntil {
            // Yielded each time round, so a runnable thread on this CPU goes first.
            sched_yield()
            n = wait(0)
            t = monotonicNanos()
        }
        if n != 0 {
            idleCounts.polledHits &+= 1
        } else {
            let rest = timeoutToNextTimer(from: t)
            if rest != 0 {
                n = wait(rest)
                t = monotonicNanos()
                idleCounts.slept &+= 1
            }
        }
        // A yield that let another thread run counts as an involuntary switch of this one.
        let contended = pollUntil > now && ccairn_thread_involuntary_switches() != switchedBefore
        if contended { idleCounts.contended &+= 1 }
        idlePoll.record(idleNanos: t &- now, contended: contended)
        return n
    }

    private func reapCompletions(_ data: inout [UInt64], _ res: inout [Int32]) {
        while true {
            let n = data.withUnsafeMutableBufferPointer { d in
                res.withUnsafeMutableBufferPointer { r in
                    ccairn_uring_reap(&ring, d.baseAddress, r.baseAddress, UInt32(d.count))
                }
            }
            if n == 0 { return }
            for i in 0..<Int(n) {
                let slot = Int(data[i])
                guard slot < ioSlots.count, let c = ioSlots[slot] else { continue }
                ioSlots[slot] = nil
                ioFree.append(slot)
                ioInFlight -= 1
                c.resume(returning: res[i])
            }
        }
    }

    func flushSubmissions() {
        guard sqesPending > 0 else { return }
        let rc = io_uring_submit(&ring)
        if rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY {
            logger.error("io_uring_submit failed", metadata: ["errno": "\(-rc)"])
        }
        sqesPending = 0
    }

    func addToEpoll(fd: Int32, data: UInt64, events: UInt32) throws(IOError) {
        var ev = epoll_event()
        ev.events = events
        ev.data.u64 = data
        if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0 { throw IOError.errno(errno, "epoll_ctl add") }
    }

    // MARK: - Timers

    struct TimerEntry: Comparable {
        let deadline: UInt64
        let seq: UInt64
        let continuation: UnsafeContinuation<Void, Never>
        static func < (a: Self, b: Self) -> Bool { (a.deadline, a.seq) < (b.deadline, b.seq) }
        static func == (a: Self, b: Self) -> Bool { a.seq == b.seq }
    }

    /// Suspends until every job runnable in this turn has run (loop thread only). A socket
    /// writer waits here before it gathers its queue, so the frames that the turn's other tasks
    /// queue go out in the same syscall instead of one each.
    nonisolated(nonsending)
    public func afterJobs() async {
        assertInLoop()
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in afterJobsWaiters.append(c) }
    }

    /// Suspends for `nanoseconds` on the loop (no hop to the global executor).
    nonisolated(nonsending)
    public func sleep(nanoseconds: UInt64) async {
        await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
            if inLoop {
                addTimer(nanoseconds, c)
            } else {
                execute { self.addTimer(nanoseconds, c) }
            }
        }
    }

    private func addTimer(_ ns: UInt64, _ c: UnsafeContinuation<Void, Never>) {
        timerSeq += 1
        timers.insert(TimerEntry(deadline: monotonicNanos() &+ ns, seq: timerSeq, continuation: c))
    }
}

public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The loop as an actor's executor. Jobs enqueued here run isolated to it.
public final class LoopSerialExecutor: SerialExecutor, @unchecked Sendable {
    // Set once in EventLoop.init before the loop is shared; never changed after.
    unowned(unsafe) var loop: EventLoop!

    public func enqueue(_ job: consuming ExecutorJob) {
        loop.enqueue(UnownedJob(job))
    }

    public func checkIsolated() {
        precondition(loop.inLoop, "expected to run on event loop \(loop.name)")
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}

/// The loop as a task executor, for tasks and nonisolated code that should run on it.
public final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // Set once in EventLoop.init before the loop is shared; never changed after.
    unowned(unsafe) var loop: EventLoop!

    public func enqueue(_ job: consuming ExecutorJob) {
        loop.enqueue(UnownedJob(job))
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}

public enum IOError: Error, CustomStringConvertible, Equatable {
    case errno(Int32, String)
    case closed
    case timedOut

    public var description: String {
        switch self {
        case .errno(let e, let what): return "\(what): \(String(cString: strerror(e))) (\(e))"
        case .closed: return "connection closed"
        case .timedOut: return "timed out"
        }
    }
}
