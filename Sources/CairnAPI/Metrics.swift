import CairnIO
import CairnReplica
import CairnSCSI
import CairnVolume
// Implementation-only, like Hummingbird (see HTTPServer.swift).
@_implementationOnly import Prometheus
import Synchronization

/// The controller's `/metrics`, computed from one `VolumeSnapshot` per scrape: nothing is
/// counted on the data path beyond the volume's own `VolumeCounters`.
///
/// Counters are swift-prometheus `Counter`s advanced by the growth of the volume's counter since
/// the previous scrape (kept under a lock, and never moved back, so concurrent scrapes that see
/// snapshots out of order cannot count twice). Both start at zero with the process, so the
/// exported value is the volume's counter. Gauges are set. The latency histograms are rendered
/// by `PrometheusText` (see there why) and appended to the registry's output.
///
/// The `openebs_*` series have Jiva's names (as OpenEBS's exporter publishes them for a Jiva
/// volume), with its units and encodings, each noted at its metric; Jiva's exporter makes them
/// all gauges, here the monotonic ones are counters (same names, so queries keep working).
final class ControllerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    private struct Last {
        var reads: UInt64 = 0, writes: UInt64 = 0
        var readNanos: UInt64 = 0, writeNanos: UInt64 = 0
        var readBlocks: UInt64 = 0, writeBlocks: UInt64 = 0
        var ejections: UInt64 = 0, rebuildBytes: UInt64 = 0, membershipChanges: UInt64 = 0
        var resyncBytes: UInt64 = 0, settledRegions: UInt64 = 0
        var backupRead: UInt64 = 0, backupUploaded: UInt64 = 0, restoreBytes: UInt64 = 0
        var throttledNanos: UInt64 = 0, throttledCommands: UInt64 = 0
        /// cairn_rebuild_progress_ratio, one per replica label.
        var progress: [String: Gauge] = [:]
    }

    private let last = Mutex(Last())

    private let reads: Counter, writes: Counter
    private let readTime: Counter, writeTime: Counter
    private let readBlocks: Counter, writeBlocks: Counter
    private let volumeStatus: Gauge
    private let totalReplicas: Gauge, healthyReplicas: Gauge, degradedReplicas: Gauge
    private let sizeOfVolume: Gauge, sectorSize: Gauge, uptime: Gauge
    private let ejections: Counter, rebuildBytes: Counter, membershipChanges: Counter
    private let resyncBytes: Counter, settledRegions: Counter
    private let backupRead: Counter, backupUploaded: Counter, restoreBytes: Counter
    private let epoch: Gauge, pauseLast: Gauge, pauseMax: Gauge
    private let qosLimits: [Gauge], qosQueue: Gauge, qosThrottled: Counter, qosThrottledCommands: Counter
    private let loop: LoopMetrics

    init(volumeName: String) {
        let r = registry
        reads = r.counter(name: "openebs_reads", help: "Reads completed on the volume (Jiva: Read Input/Outputs on Volume)")
        writes = r.counter(name: "openebs_writes", help: "Writes completed on the volume (Jiva: Write Input/Outputs on Volume)")
        readTime = r.counter(name: "openebs_read_time", help: "Sum of read latencies in nanoseconds (Jiva's unit)")
        writeTime = r.counter(name: "openebs_write_time", help: "Sum of write latencies in nanoseconds (Jiva's unit)")
        readBlocks = r.counter(name: "openebs_read_block_count", help: "Logical blocks read (of openebs_sector_size bytes)")
        writeBlocks = r.counter(name: "openebs_write_block_count", help: "Logical blocks written (of openebs_sector_size bytes)")
        volumeStatus = r.gauge(name: "openebs_volume_status",
                                   help: "Status of volume: (1, 2, 3, 4) = {Offline, Degraded, Healthy, Unknown}; read-only counts as Offline, as in Jiva")
        totalReplicas = r.gauge(name: "openebs_total_replica_count", help: "Replicas in the volume's set, whatever their mode")
        healthyReplicas = r.gauge(name: "openebs_healthy_replica_count", help: "Replicas in mode RW")
        degradedReplicas = r.gauge(name: "openebs_degraded_replica_count",
                                       help: "Replicas not RW (rebuilding WO or absent ERR), as Jiva counts its non-RW replicas")
        sizeOfVolume = r.gauge(name: "openebs_size_of_volume", help: "Size of the volume in GiB (Jiva's unit)")
        sectorSize = r.gauge(name: "openebs_sector_size", help: "Logical block size of the volume in bytes")
        uptime = r.gauge(name: "openebs_volume_uptime", labels: [("volName", volumeName), ("castype", "cairn")],
                             help: "Seconds since the controller started")
        ejections = r.counter(name: "cairn_replica_ejections_total", help: "Replicas taken out of the set (failed, slow, or removed)")
        rebuildBytes = r.counter(name: "cairn_rebuild_bytes_total", help: "Bytes copied by rebuilds")
        membershipChanges = r.counter(name: "cairn_membership_changes_total", help: "Membership records sent to the replicas")
        resyncBytes = r.counter(name: "cairn_resync_bytes_total",
                                help: "Bytes copied at start-up to make the replicas agree where a write may have reached some only")
        settledRegions = r.counter(name: "cairn_settled_regions_total",
                                   help: "Write-intent regions settled on the replicas (idle, nothing in flight)")
        backupRead = r.counter(name: "cairn_backup_read_bytes_total", help: "Bytes finished backups read from snapshots")
        backupUploaded = r.counter(name: "cairn_backup_uploaded_bytes_total",
                                   help: "Bytes finished backups stored on their targets (compressed, new blocks only)")
        restoreBytes = r.counter(name: "cairn_restore_bytes_total", help: "Bytes a restore wrote to this new volume")
        epoch = r.gauge(name: "cairn_epoch", help: "Newest membership epoch persisted on the RW replicas")
        pauseLast = r.gauge(name: "cairn_rebuild_switch_pause_seconds", labels: [("pause", "last")],
                                help: "Time new writes were held while a rebuilt replica turned RW: the last switch and the longest")
        pauseMax = r.gauge(name: "cairn_rebuild_switch_pause_seconds", labels: [("pause", "max")],
                               help: "Time new writes were held while a rebuilt replica turned RW: the last switch and the longest")
        qosLimits = QoSKind.allCases.map {
            r.gauge(name: "cairn_qos_limit", labels: [("kind", $0.rawValue)],
                    help: "QoS limit in force: IOPS (iops, read_iops, write_iops) or bytes per second (*bandwidth); 0 is no limit")
        }
        qosQueue = r.gauge(name: "cairn_qos_queue_depth", help: "Commands waiting for the QoS limit now")
        qosThrottled = r.counter(name: "cairn_qos_throttled_seconds_total", help: "Time commands waited for the QoS limit, summed")
        qosThrottledCommands = r.counter(name: "cairn_qos_throttled_commands_total", help: "Commands that waited for the QoS limit")
        loop = LoopMetrics(registry: r)
    }

    /// Jiva's volume status encoding.
    static func jivaStatus(_ s: VolumeState) -> Double {
        switch s {
        case .offline, .readOnly: return 1
        case .degraded: return 2
        case .healthy: return 3
        }
    }

    /// The whole exposition for `s` and the controller's event loop.
    func render(_ s: VolumeSnapshot, qos: QoSStatus, loop idle: LoopIdleStats) -> String {
        let c = s.counters
        last.withLock { l in
            advanceSeconds(qosThrottled, &l.throttledNanos, qos.throttledNanos)
            advance(qosThrottledCommands, &l.throttledCommands, qos.throttledCommands)
            advance(reads, &l.reads, c.reads)
            advance(writes, &l.writes, c.writes)
            advance(readTime, &l.readNanos, c.readNanos)
            advance(writeTime, &l.writeNanos, c.writeNanos)
            advance(readBlocks, &l.readBlocks, c.readBlocks)
            advance(writeBlocks, &l.writeBlocks, c.writeBlocks)
            advance(ejections, &l.ejections, c.ejections)
            advance(rebuildBytes, &l.rebuildBytes, c.rebuildBytes)
            advance(membershipChanges, &l.membershipChanges, c.membershipChanges)
            advance(resyncBytes, &l.resyncBytes, c.resyncBytes)
            advance(settledRegions, &l.settledRegions, c.settledRegions)
            advance(backupRead, &l.backupRead, c.backupReadBytes)
            advance(backupUploaded, &l.backupUploaded, c.backupUploadedBytes)
            advance(restoreBytes, &l.restoreBytes, c.restoreBytes)

            var seen = Set<String>()
            for r in s.replicas {
                guard let p = r.rebuild else { continue }
                let key = r.id ?? r.address
                seen.insert(key)
                let g = l.progress[key] ?? registry.gauge(
                    name: "cairn_rebuild_progress_ratio", labels: [("replica", key)],
                    help: "Progress of the replica's latest rebuild, 0 to 1 (1 once finished)")
                l.progress[key] = g
                g.set(to: p.finished ? 1 : min(1, p.percent / 100))
            }
            for (key, g) in l.progress where !seen.contains(key) {
                registry.unregisterGauge(g)
                l.progress[key] = nil
            }
        }
        volumeStatus.set(to: Self.jivaStatus(s.state))
        totalReplicas.set(to: Double(s.replicas.count))
        healthyReplicas.set(to: Double(s.healthyCount))
        degradedReplicas.set(to: Double(s.replicas.count - s.healthyCount))
        sizeOfVolume.set(to: Double(s.size) / Double(1 << 30))
        sectorSize.set(to: Double(s.blockSize))
        uptime.set(to: s.uptimeSeconds)
        epoch.set(to: Double(s.epoch))
        pauseLast.set(to: Double(c.lastSwitchPauseNanos) / 1e9)
        pauseMax.set(to: Double(c.longestSwitchPauseNanos) / 1e9)
        for (g, limit) in zip(qosLimits, qos.limits.byKind) { g.set(to: Double(limit ?? 0)) }
        qosQueue.set(to: Double(qos.queueDepth))
        loop.update(idle)

        var out = registry.emitToString()
        PrometheusText.latencyHistogram(name: "cairn_read_latency_seconds",
                                        help: "Read latency seen by the volume, from receiving the read to its data in the buffer",
                                        c.readLatency, into: &out)
        PrometheusText.latencyHistogram(name: "cairn_write_latency_seconds",
                                        help: "Write latency seen by the volume, until the replica set acknowledged it",
                                        c.writeLatency, into: &out)
        PrometheusText.latencyHistogram(name: "cairn_snapshot_pause_seconds",
                                        help: "How long new writes were held for each snapshot taken (the drain of those in flight included)",
                                        c.snapshotPause, into: &out)
        return out
    }
}

/// The replica's `/metrics`, from one `ReplicaHTTPSnapshot` per scrape: counters advanced by
/// their growth since the last scrape (as `ControllerMetrics` does), gauges set.
final class ReplicaMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    private struct Last {
        var reads: UInt64 = 0, writes: UInt64 = 0, readBytes: UInt64 = 0, writeBytes: UInt64 = 0
        var rebuildBytes: UInt64 = 0, errors: UInt64 = 0
        var refused: [HandshakeRefusal: UInt64] = [:]
        /// cairn_replica_dirty_regions, one per absent member.
        var dirty: [String: Gauge] = [:]
    }

    private let last = Mutex(Last())
    private let reads: Counter, writes: Counter, readBytes: Counter, writeBytes: Counter
    private let rebuildBytes: Counter, errors: Counter
    private let refused: [HandshakeRefusal: Counter]
    private let allocated: Gauge, size: Gauge, epoch: Gauge
    private let loop: LoopMetrics

    init(replicaID: String) {
        let r = registry
        reads = r.counter(name: "cairn_replica_reads_total", help: "Reads served (controller reads and rebuild reads)")
        writes = r.counter(name: "cairn_replica_writes_total", help: "Writes applied, not counting rebuild writes")
        readBytes = r.counter(name: "cairn_replica_read_bytes_total", help: "Bytes read")
        writeBytes = r.counter(name: "cairn_replica_write_bytes_total", help: "Bytes written, not counting rebuild writes")
        rebuildBytes = r.counter(name: "cairn_replica_rebuild_bytes_written_total", help: "Bytes written by rebuilds into this replica")
        errors = r.counter(name: "cairn_replica_errors_total", help: "I/O errors on the replica's files")
        var refused: [HandshakeRefusal: Counter] = [:]
        for why in HandshakeRefusal.allCases {
            refused[why] = r.counter(name: "cairn_replica_handshakes_refused_total", labels: [("reason", why.rawValue)],
                                     help: "Controller handshakes refused: unauthorized (no or a wrong proof of the volume's secret), wrong_volume, version, other")
        }
        self.refused = refused
        allocated = r.gauge(name: "cairn_replica_allocated_bytes", help: "Bytes allocated in the replica's data file")
        size = r.gauge(name: "cairn_replica_size_bytes", help: "The volume size this replica holds")
        epoch = r.gauge(name: "cairn_replica_epoch", help: "Epoch of the membership record persisted here (0: none)")
        r.gauge(name: "cairn_replica_info", labels: [("replica", replicaID)], help: "The replica's id (value 1)").set(to: 1)
        loop = LoopMetrics(registry: r)
    }

    func render(_ s: ReplicaHTTPSnapshot) -> String {
        last.withLock { l in
            advance(reads, &l.reads, s.reads)
            advance(writes, &l.writes, s.writes)
            advance(readBytes, &l.readBytes, s.readBytes)
            advance(writeBytes, &l.writeBytes, s.writeBytes)
            advance(rebuildBytes, &l.rebuildBytes, s.rebuildBytesWritten)
            advance(errors, &l.errors, s.errors)
            for (why, c) in refused { advance(c, &l.refused[why, default: 0], s.refusedHandshakes[why] ?? 0) }
            var seen = Set<String>()
            for m in s.status.dirtyMaps {
                seen.insert(m.member)
                let g = l.dirty[m.member] ?? registry.gauge(
                    name: "cairn_replica_dirty_regions", labels: [("member", m.member)],
                    help: "Regions marked in the dirty map kept for an absent member (each of the map's granularity)")
                l.dirty[m.member] = g
                g.set(to: Double(m.dirtyRegions))
            }
            for (member, g) in l.dirty where !seen.contains(member) {
                registry.unregisterGauge(g)
                l.dirty[member] = nil
            }
        }
        allocated.set(to: Double(s.status.allocatedBytes))
        size.set(to: Double(s.status.size))
        epoch.set(to: Double(s.status.record?.epoch ?? 0))
        loop.update(s.loop)
        return registry.emitToString()
    }
}

/// Lines of the Prometheus text exposition format (0.0.4) that swift-prometheus cannot produce.
///
/// swift-prometheus 2.4.1's `Histogram` can only `record` single observations, and its bucket
/// state is internal: it cannot be set from bucket counts kept elsewhere. The volume keeps its
/// latency histograms itself, in fixed buckets (`LatencyHistogram`, filled on the data path at
/// no more than an increment), so at scrape time those are rendered here, next to the
/// registry's output: `# HELP`, `# TYPE NAME histogram`, cumulative `NAME_bucket{le="..."}`
/// lines ending with `le="+Inf"`, then `NAME_sum` and `NAME_count`. Names used here are never
/// registered in the registry, so no family appears twice.
enum PrometheusText {
    /// A histogram in seconds from a `LatencyHistogram` (per-bucket counts, bounds in µs).
    static func latencyHistogram(name: String, help: String, _ h: LatencyHistogram, into out: inout String) {
        out += "# HELP \(name) \(escapeHelp(help))\n"
        out += "# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (i, bound) in LatencyHistogram.boundsMicros.enumerated() {
            cumulative &+= i < h.counts.count ? h.counts[i] : 0
            out += "\(name)_bucket{le=\"\(seconds(micros: bound))\"} \(cumulative)\n"
        }
        // The last bucket of `LatencyHistogram` is the one above every bound.
        let total = cumulative &+ (h.counts.count > LatencyHistogram.boundsMicros.count ? h.counts.last! : 0)
        out += "\(name)_bucket{le=\"+Inf\"} \(total)\n"
        out += "\(name)_sum \(seconds(nanos: h.sumNanos))\n"
        out += "\(name)_count \(total)\n"
    }

    /// `micros` as an exact decimal number of seconds: 50 -> "0.00005", 2_500_000 -> "2.5".
    static func seconds(micros: UInt64) -> String {
        decimal(micros, scaleDigits: 6)
    }

    static func seconds(nanos: UInt64) -> String {
        decimal(nanos, scaleDigits: 9)
    }

    static func decimal(_ value: UInt64, scaleDigits: Int) -> String {
        var scale: UInt64 = 1
        for _ in 0..<scaleDigits { scale *= 10 }
        let whole = value / scale
        var frac = String(value % scale)
        if frac == "0" { return "\(whole)" }
        frac = String(repeating: "0", count: scaleDigits - frac.count) + frac
        while frac.hasSuffix("0") { frac.removeLast() }
        return "\(whole).\(frac)"
    }

    /// HELP text: backslash and line feed escaped, as the format requires.
    static func escapeHelp(_ s: String) -> String {
        s.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }
}

extension PrometheusCollectorRegistry {
    /// A counter named exactly `name` (the descriptor's other parts left empty).
    func counter(name: String, labels: [(String, String)] = [], help: String) -> Counter {
        let d = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        return labels.isEmpty ? makeCounter(descriptor: d) : makeCounter(descriptor: d, labels: labels)
    }

    /// A gauge named exactly `name`.
    func gauge(name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        let d = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        return labels.isEmpty ? makeGauge(descriptor: d) : makeGauge(descriptor: d, labels: labels)
    }
}
