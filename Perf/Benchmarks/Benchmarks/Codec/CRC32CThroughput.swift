import Benchmark
import CairnIO

/// CRC32C (the iSCSI digests and the replica frames' checksums) from one data segment to a big
/// transfer. Seeds are chained so no call can be skipped; "MB/s" is bytes per wall-clock second.
func crc32cBenchmarks() {
    let megabytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
    let sizes: [(String, Int, BenchmarkScalingFactor)] = [
        ("512B", 512, .kilo), ("4KiB", 4096, .kilo), ("64KiB", 65_536, .kilo), ("1MiB", 1 << 20, .one),
    ]
    for (label, size, scaling) in sizes {
        var config = Benchmark.defaultConfiguration
        config.metrics += [megabytesPerSecond]
        config.scalingFactor = scaling
        Benchmark("CRC32C-\(label)", configuration: config) { benchmark, data in
            var crc: UInt32 = 0
            benchmark.startMeasurement()
            let start = monotonicNanos()
            for _ in benchmark.scaledIterations {
                crc = CRC32C.checksum(data.base, size, seed: crc)
            }
            let elapsed = monotonicNanos() &- start
            benchmark.stopMeasurement()
            blackHole(crc)
            let bytes = UInt64(size) * UInt64(benchmark.scaledIterations.count)
            benchmark.measurement(megabytesPerSecond, Int(bytes * 1000 / max(elapsed, 1)))
        } setup: {
            Scratch(size)
        }
    }
}
