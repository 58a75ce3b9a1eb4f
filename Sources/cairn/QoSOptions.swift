import ArgumentParser
import CairnSCSI

/// `cairn controller`'s QoS limits: IOPS and bytes per second, for reads, writes or both.
struct QoSOptions: ParsableArguments {
    @Option(help: "Most I/Os per second, reads and writes together (one per 128 KiB or part of a large I/O).")
    var qosIops: UInt64?
    @Option(help: "Most reads per second.")
    var qosReadIops: UInt64?
    @Option(help: "Most writes per second.")
    var qosWriteIops: UInt64?
    @Option(help: "Most bytes per second, reads and writes together (e.g. 100MiB).")
    var qosBandwidth: ByteSize?
    @Option(help: "Most bytes read per second.")
    var qosReadBandwidth: ByteSize?
    @Option(help: "Most bytes written per second.")
    var qosWriteBandwidth: ByteSize?
    @Option(help: "How much an idle volume may save up and spend above a limit, as time at the limit (e.g. 1s, 500ms, 0).")
    var qosBurst: Duration = Duration(argument: "1s")!

    var limits: QoSLimits {
        QoSLimits(iops: qosIops, readIOPS: qosReadIops, writeIOPS: qosWriteIops, bandwidth: qosBandwidth?.bytes,
                  readBandwidth: qosReadBandwidth?.bytes, writeBandwidth: qosWriteBandwidth?.bytes,
                  burstSeconds: Double(qosBurst.nanoseconds) / 1e9)
    }
}
