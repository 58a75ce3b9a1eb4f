@testable import CairnIO
import Testing

/// An actor that serves numbered jobs on a RunnerPool, each job waiting until released, so the
/// test decides how many are in progress at once.
actor PooledWorker {
    let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    var runners = RunnerPool<Int>()
    var started: [Int] = []
    var finished: [Int] = []
    var gates: [Int: CheckedContinuation<Void, Never>] = [:]
    var spawned = 0
    var ended = 0

    init(loop: EventLoop) { self.loop = loop }

    func submit(_ job: Int) {
        if runners.submit(job) {
            spawned += 1
            loop.spawn { await self.run() }
        }
    }

    private func run() async {
        var next = runners.firstWork()
        while let job = next {
            started.append(job)
            await withCheckedContinuation { gates[job] = $0 }
            finished.append(job)
            next = await withUnsafeContinuation { runners.park($0) }
        }
        runners.runnerEnded()
        ended += 1
    }

    func release(_ job: Int) { gates.removeValue(forKey: job)?.resume() }
    func stop() { runners.stop() }
    func state() -> (started: [Int], finished: [Int], spawned: Int, ended: Int, count: Int) {
        (started, finished, spawned, ended, runners.count)
    }

    /// Lets the loop run every job already queued (a NOP completes after them).
    func settle() async { for _ in 0..<4 { _ = await loop.nop() } }
}

@Suite struct RunnerPoolTests {
    @Test func runnersAreReusedAndNeverMoreThanTheWorkInProgress() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let w = PooledWorker(loop: loop)
        // Three at once: three runners, started in submission order.
        for j in 1...3 { await w.submit(j) }
        await w.settle()
        var s = await w.state()
        #expect(s.started == [1, 2, 3])
        #expect(s.spawned == 3)
        for j in 1...3 { await w.release(j) }
        await w.settle()
        // A hundred more, one at a time: the parked runners serve them all, none is created.
        for j in 4...103 {
            await w.submit(j)
            await w.settle()
            await w.release(j)
            await w.settle()
        }
        s = await w.state()
        #expect(s.finished == Array(1...103))
        #expect(s.spawned == 3)
        #expect(s.count == 3)
        await w.stop()
        await w.settle()
        s = await w.state()
        #expect(s.ended == 3)
        #expect(s.count == 0)
    }

    @Test func aBusyRunnerEndsWhenItParksAfterStop() async throws {
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let w = PooledWorker(loop: loop)
        await w.submit(1)
        await w.settle()
        await w.stop()
        await w.release(1)
        await w.settle()
        let s = await w.state()
        #expect(s.finished == [1])
        #expect(s.ended == 1)
    }
}
