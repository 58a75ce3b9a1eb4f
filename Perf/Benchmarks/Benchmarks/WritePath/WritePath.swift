import Benchmark
import BenchFixtures

/// One 4 KiB write through the whole controller path: a SCSI Command PDU with immediate data
/// read by the connection actor, the task table, SCSITarget's WRITE(10), a MemoryBlockStore,
/// and the SCSI Response written back. ISCSIConnection reads from a TCPConnection only, so the
/// PDUs cross a loopback TCP connection (initiator and target on one loop, as in SessionTests);
/// the initiator side allocates nothing per I/O, so the count is the target's.
///
/// No allocation per write (Thresholds/WritePath.*.p90.json holds 0). It used to be 12: a Swift
/// task per command and one per flush (task, closure, operation box, task-allocator slabs) and
/// the ISCSITask object; now commands go to the connection's RunnerPool, one parked task
/// flushes, and ISCSITask records are recycled. The tolerance below (50 per 1000 writes)
/// absorbs a rare amortised growth, never one more allocation per write (+1000 per sample).
let benchmarks: @Sendable () -> Void = {
    let fixture = Fixture<WritePathTarget>()
    Benchmark(
        "iSCSI-WRITE-4KiB-to-MemoryBlockStore",
        configuration: .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            timeUnits: .nanoseconds,
            scalingFactor: .kilo,
            maxDuration: .seconds(1),
            thresholds: [.mallocCountTotal: BenchmarkThresholds(relative: [.p90: 0.5], absolute: [.p90: 50])]
        )
    ) { benchmark in
        let t = fixture.value
        await t.loop.pinned {
            benchmark.startMeasurement()
            do {
                for i in benchmark.scaledIterations { try await t.write4K(lba: UInt32(i & 255) * 8) }
            } catch {
                benchmark.error("\(error)")
            }
            benchmark.stopMeasurement()
        }
    } setup: {
        fixture.set(try await WritePathTarget.start())
    } teardown: {
        await fixture.take()?.stop()
    }
}
