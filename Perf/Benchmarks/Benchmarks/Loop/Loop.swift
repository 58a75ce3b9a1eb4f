import Benchmark

/// The event loop's own costs: an io_uring NOP awaited from a task pinned to the loop, and a
/// 4 KiB O_DIRECT read awaited pinned to the loop versus from Swift's global pool (the hop
/// DESIGN.md prices at ~10 µs and two thread wake-ups).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(1)
    )
    nopBenchmarks()
    readBenchmarks()
}
