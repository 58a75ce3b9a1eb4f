import Benchmark
import BenchFixtures

/// The loop's cheapest submit and complete: an io_uring NOP (an SQE, one io_uring_enter per
/// turn, a CQE, a continuation resumed), awaited from a task that prefers the loop.
func nopBenchmarks() {
    let fixture = Fixture<BenchLoop>()
    Benchmark("NOP-round-trip-pinned") { benchmark in
        let loop = fixture.value
        await loop.pinned {
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let rc = await loop.nop()
                if rc != 0 { benchmark.error("NOP completed with \(rc)"); break }
            }
            benchmark.stopMeasurement()
        }
    } setup: {
        fixture.set(try BenchLoop(name: "bench-nop"))
    } teardown: {
        fixture.take()?.stop()
    }
}
