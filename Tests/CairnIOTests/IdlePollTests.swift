@testable import CairnIO
import Glibc
import Synchronization
import Testing

@Suite struct IdlePollTests {
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

    @Test func offNeverPolls() {
        var p = IdlePoll.off
        for g: UInt64 in [1, 1_000, 1_000_000] { p.record(idleNanos: g) }
        #expect(!p.enabled && p.windowNanos == 0)
    }

    /// Posts `count` calls to the loop from another thread, `gapMicros` apart, and returns the
    /// loop's idle statistics after the last one ran.
    private func post(count: Int, gapMicros: UInt32, poll: IdlePoll) async throws -> (polledHits: UInt64, slept: UInt64, windowNanos: UInt64) {
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
        let s = try await post(count: 40, gapMicros: 1_000, poll: IdlePoll(maxNanos: 2_000_000_000, startNanos: 1_000_000_000))
        #expect(s.windowNanos >= 1_000_000_000)
        #expect(s.polledHits >= 30, "polled hits \(s.polledHits), slept \(s.slept)")
        #expect(s.slept <= 5, "slept \(s.slept) times")
    }

    @Test func withPollingOffTheLoopSleepsEachTime() async throws {
        let s = try await post(count: 20, gapMicros: 1_000, poll: .off)
        #expect(s.polledHits == 0)
        #expect(s.windowNanos == 0)
    }

    /// Polling stops at the next timer: a 10 ms sleep on a loop whose window is 20 s ends long
    /// before the window would.
    @Test func pollingNeverDelaysATimer() async throws {
        let loop = try EventLoop(name: "idle-poll-timer", idlePoll: IdlePoll(maxNanos: 20_000_000_000, startNanos: 20_000_000_000))
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
