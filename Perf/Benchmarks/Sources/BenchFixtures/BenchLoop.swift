import CairnIO

/// An event loop thread for one benchmark, behind a small API of its own: the benchmark
/// executables must not look into `EventLoop` themselves (see Package.swift).
public final class BenchLoop: Sendable {
    let loop: EventLoop

    public init(name: String) throws {
        loop = try EventLoop(name: name)
        loop.start()
    }

    public func stop() { loop.stopAndJoin() }

    /// Runs `body` in the calling task, with the loop as its task executor: its awaits on the
    /// loop complete on the loop thread, with no hop to Swift's global pool.
    public func pinned(_ body: () async -> Void) async {
        await withTaskExecutorPreference(loop.taskExecutor, operation: body)
    }

    /// One io_uring NOP, submitted and awaited (0 on success).
    public func nop() async -> Int32 {
        await loop.nop()
    }
}
