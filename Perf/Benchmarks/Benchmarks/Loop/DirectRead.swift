import Benchmark
import BenchFixtures

/// A 4 KiB O_DIRECT read goes to the disk (~100 µs here), so one read per sample.
func readBenchmarks() {
    var config = Benchmark.defaultConfiguration
    config.scalingFactor = .one
    // The data path's way: the task prefers the loop, so the SQE is queued in place and the
    // completion resumes the task on the loop thread.
    let pinned = Fixture<DirectReadFile>()
    Benchmark("Read-4KiB-O_DIRECT-pinned", configuration: config) { benchmark in
        let file = pinned.value
        await file.loop.pinned {
            benchmark.startMeasurement()
            do {
                for i in benchmark.scaledIterations { try await file.read(i) }
            } catch {
                benchmark.error("\(error)")
            }
            benchmark.stopMeasurement()
        }
    } setup: {
        pinned.set(try DirectReadFile.make())
    } teardown: {
        pinned.take()?.close()
    }

    // The pitfall: a task on the global pool posts each SQE to the loop (EventLoop.execute)
    // and is resumed through the pool, two thread wake-ups per I/O.
    let global = Fixture<DirectReadFile>()
    Benchmark("Read-4KiB-O_DIRECT-global", configuration: config) { benchmark in
        let file = global.value
        benchmark.startMeasurement()
        do {
            for i in benchmark.scaledIterations { try await file.read(i) }
        } catch {
            benchmark.error("\(error)")
        }
        benchmark.stopMeasurement()
    } setup: {
        global.set(try DirectReadFile.make())
    } teardown: {
        global.take()?.close()
    }
}
