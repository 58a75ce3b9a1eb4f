import Benchmark

/// PDU headers, CRC32C and replica frames: the per-I/O CPU work of the data path, measured
/// without sockets or threads. Each benchmark is also an allocation check (Thresholds/).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(1)
    )
    pduBenchmarks()
    crc32cBenchmarks()
    frameBenchmarks()
}
