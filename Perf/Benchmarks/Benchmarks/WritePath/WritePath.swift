import Benchmark
import BenchFixtures

/// One 4 KiB write through the whole controller path: a SCSI Command PDU with immediate data
/// read by the connection actor, the task table, SCSITarget's WRITE(10), a MemoryBlockStore,
/// and the SCSI Response written back. ISCSIConnection reads from a TCPConnection only, so the
/// PDUs cross a loopback TCP connection (initiator and target on one loop, as in SessionTests);
/// the initiator side allocates nothing per I/O, so the count is the target's.
///
/// Today's 12 allocations per write (Thresholds/WritePath.*.p90.json holds 12000 per 1000):
/// the ISCSITask object; the command's task (`ISCSIConnection.start` -> `loop.spawn`: closure
/// context, task, operation box, first task-allocator slab); task-allocator slabs as that task
/// enters `SCSITarget.execute`, `SCSITarget.run` and switches executor; the flush task
/// (`scheduleFlush` -> `loop.spawn`: task, operation box, first slab); and a slab in
/// `PDUWriter.flush`. The tolerance below (50 per 1000 writes) absorbs rare amortised growth,
/// never one more allocation per write (+1000 per sample).
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
