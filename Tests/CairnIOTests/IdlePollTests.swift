@testable import CairnIO
import Glibc
import Synchronization
import Testing

/// Serialized: one test keeps every CPU busy on purpose, which would starve the others' loops.
@Suite(.serialized) struct IdlePollTests {
    /// The window after each recorded idle gap (max 200 µs, start 50 µs).
    @Test(arguments: [
        // A gap a window would have caught grows it: from nothing to the start, then doubling.
        ([30_000], [50_000]),
        ([30_000, 60_000, 120_000], [50_000, 100_000, 200_000]),
        // Capped at the maximum; gaps inside the window keep it.
        ([150_000, 150_000, 150_000, 150_000, 10_000], [50_000, 100_000, 200_000, 200_000, 200_000]),
        // A gap longer than the maximum halves it; below the start it is off.
        ([150_000, 150_000, 150_000, 5_000_000, 5_000_000, 5_000_000], [50_000, 100_000, 200_000, 100_000, 50_000, 0]),
        // An idle loop never starts polling.
        ([1_000_000_000, 1_000_000_000], [0, 0]),
    ] as [([UInt64], [UInt64])])
    func windowAdaptsToTheGaps(gaps: [UInt64], windows: [UInt64]) {
        var p = IdlePoll(maxNanos: 200_000, startNanos: 50_000)
        var seen: [UInt64] = []
        for g in gaps {
            p.record(idleNanos: g)
            seen.append(p.windowNanos)
        }
        #expect(seen == windows)
    }

    /// A poll that handed the CPU to another thread stops polling, and it stays off for
    /// `holdOffPeriods` idle periods however short they are; then it grows again.
    @Test func pollingThatGaveTheCPUAwayStopsForAWhile() {
        var p = IdlePoll(maxNanos: 200_000, startNanos: 50_000)
        p.record(idleNanos: 30_000)
        p.record(idleNanos: 60_000)
        #expect(p.windowNanos == 100_000)
        p.record(idleNanos: 20_000, contended: true)
        #expect(p.windowNanos == 0)
        for _ in 0..<IdlePoll.holdOffPeriods { p.record(idleNanos: 30_000) }
        #expect(p.windowNanos == 0)
        p.record(idleNanos: 30_000)
        #expect(p.windowNanos == 50_000)
    }

    @Test func offNeverPolls() {
        var p = IdlePoll.off
        for g: UInt64 in [1, 1_000, 1_000_000] { p.record(idleNanos: g) }
        #expect(!p.enabled && p.windowNanos == 0)
    }

    /// Posts `count` calls to the loop from another thread, `gapMicros` apart, and returns the
    /// loop's idle statistics after the last one ran.
    private func post(count: Int, gapMicros: UInt32, poll: IdlePoll) async throws -> LoopIdleStats {
        let loop = try EventLoop(name: "idle-poll-test", idlePoll: poll)
        loop.start()
        defer { loop.stopAndJoin() }
        let ran = Atomic<Int>(0)
        for _ in 0..<count {
            usleep(gapMicros)
            loop.execute { ran.add(1, ordering: .relaxed) }
        }
        while ran.load(ordering: .relaxed) < count { usleep(1_000) }
        return try await loop.run { loop.idleStats }
    }

    /// Work that comes a millisecond apart is found by polling once the window has grown to
    /// cover the gap: the loop stops going to sleep between calls.
    @Test func eventsThatComeOftenAreFoundWhilePolling() async throws {
        // Without the back-off: other tests running at the same time may want the CPU.
        let s = try await post(count: 40, gapMicros: 1_000, poll: IdlePoll(maxNanos: 2_000_000_000, startNanos: 1_000_000_000,
                                                                           backsOffWhenContended: false))
        #expect(s.windowNanos >= 1_000_000_000)
        #expect(s.polledHits >= 20, "polled hits \(s.polledHits), slept \(s.slept)")
        #expect(s.slept <= 5, "slept \(s.slept) times")
    }

    /// With every CPU busy with other threads, each poll's yield hands the CPU over: the loop
    /// notices, stops polling and sleeps instead.
    @Test func pollingStopsWhenItsYieldsGiveTheCPUAway() async throws {
        let flags = SpinFlags()
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var spinners: [pthread_t] = []
        for _ in 0..<max(cpus, 1) {
            var t = pthread_t()
            pthread_create(&t, nil, { arg in
                let f = Unmanaged<SpinFlags>.fromOpaque(arg!).takeRetainedValue()
                f.spinning.add(1, ordering: .relaxed)
                while !f.stop.load(ordering: .relaxed) {}
                return nil
            }, Unmanaged.passRetained(flags).toOpaque())
            spinners.append(t)
        }
        defer {
            flags.stop.store(true, ordering: .relaxed)
            for t in spinners { pthread_join(t, nil) }
        }
        while flags.spinning.load(ordering: .relaxed) < spinners.count { usleep(100) }
        let s = try await post(count: 40, gapMicros: 1_000, poll: IdlePoll(maxNanos: 2_000_000_000, startNanos: 1_000_000_000))
        #expect(s.contended >= 1)
        // Calls that pile up while the loop waits for a CPU run in one turn, so count what
        // polling found, not the sleeps: at most the polls before the first handed-over yield.
        #expect(s.polledHits <= 3, "polled hits \(s.polledHits), slept \(s.slept)")
    }

    @Test func withPollingOffTheLoopSleepsEachTime() async throws {
        let s = try await post(count: 20, gapMicros: 1_000, poll: .off)
        #expect(s.polledHits == 0)
        #expect(s.windowNanos == 0)
    }

    /// Polling stops at the next timer: a 10 ms sleep on a loop whose window is 20 s ends long
    /// before the window would.
    @Test func pollingNeverDelaysATimer() async throws {
        let loop = try EventLoop(name: "idle-poll-timer", idlePoll: IdlePoll(maxNanos: 20_000_000_000, startNanos: 20_000_000_000,
                                                                           backsOffWhenContended: false))
        loop.start()
        defer { loop.stopAndJoin() }
        // Grow the window first: a short gap the window would have caught.
        loop.execute {}
        usleep(2_000)
        loop.execute {}
        usleep(2_000)
        let window = try await loop.run { loop.idleStats.windowNanos }
        #expect(window == 20_000_000_000)
        let t0 = monotonicNanos()
        try await loop.run { await loop.sleep(nanoseconds: 10_000_000) }
        #expect(monotonicNanos() - t0 < 5_000_000_000)
    }
}

/// What the spinner threads of `pollingStopsWhenItsYieldsGiveTheCPUAway` share with the test.
private final class SpinFlags: Sendable {
    let stop = Atomic<Bool>(false)
    let spinning = Atomic<Int>(0)
}
