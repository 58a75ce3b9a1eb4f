// End-to-end tests of the HTTP API: 3 real `cairn replica --http` processes and one
// `cairn controller --replica ... --api 127.0.0.1:0`, driven with a plain socket HTTP client
// and qemu-io for writes. Each test starts its own set on ports the processes pick and stops it
// by pid; every wait has a deadline.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Integration: HTTP API of cairn controller and replica (needs the built `cairn`)", .serialized)
struct HTTPAPITests {
    /// Seconds a fresh set may take to be healthy (the controller waits 1 s for stragglers).
    static let settle: TimeInterval = 20

    /// Waits until /v1/volume says healthy with an epoch, and returns it.
    static func settled(_ v: APICluster) throws -> [String: Any] {
        var last: [String: Any] = [:]
        try waitUntil(settle, "the volume becomes healthy with an epoch >= 1",
                       describe: { "last /v1/volume: \(last)\n\(v.controllerLogText)" }) {
            last = try v.get("/v1/volume").json as? [String: Any] ?? [:]
            return last["state"] as? String == "healthy" && (last["epoch"] as? Int ?? 0) >= 1
        }
        return last
    }

    static func replicas(_ v: APICluster) throws -> [[String: Any]] {
        try v.get("/v1/replicas").json as? [[String: Any]] ?? []
    }

    /// Writes `bytes` at offset 0 through the iSCSI target with qemu-io.
    static func write(_ v: APICluster, bytes: Int) throws {
        let r = try Tools.run("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 \(bytes)", v.iscsiURL], timeout: 30)
        try #require(r.succeeded && r.output.contains("wrote \(bytes)/\(bytes) bytes"), "\(r)")
    }

    @Test("GET /v1/volume settles healthy at epoch >= 1; /v1/replicas lists 3 RW; /healthz is ok",
          .timeLimit(.minutes(1)))
    func volumeAndReplicas() throws {
        let v = try APICluster(name: "api-volume")
        defer { v.stop() }
        let vol = try Self.settled(v)
        #expect(vol["name"] as? String == "api-volume")
        #expect(vol["size"] as? Int == 64 << 20)
        #expect(vol["blockSize"] as? Int == 512)
        #expect(vol["replicaCount"] as? Int == 3)
        #expect(vol["healthyCount"] as? Int == 3)
        #expect(vol["minHealthy"] as? Int == 2)
        #expect(Set(vol["members"] as? [String] ?? []) == Set(v.replicas.map(\.id)), "\(vol)")

        let reps = try Self.replicas(v)
        #expect(reps.count == 3, "\(reps)")
        for r in reps {
            #expect(r["mode"] as? String == "RW", "\(r)")
            #expect(r["connected"] as? Bool == true, "\(r)")
            #expect(r.keys.contains("lastError") && r.keys.contains("rebuild") && r["outstanding"] is Int, "\(r)")
        }
        #expect(Set(reps.compactMap { $0["address"] as? String }) == Set(v.replicas.map(\.address)))
        #expect(Set(reps.compactMap { $0["id"] as? String }) == Set(v.replicas.map(\.id)))

        let health = try v.get("/healthz")
        #expect(health.status == 200 && health.text.hasPrefix("ok"), "\(health)")
        for r in v.replicas {
            let h = try HTTPClient.get(r.http + "/healthz")
            #expect(h.status == 200 && h.text.contains(r.id), "\(h)")
        }
        #expect(try v.get("/v1/nothing").status == 404)
    }

    @Test("GET /v1/stats has Jiva's fields; WriteIOPS and TotalWriteBlockCount grow after a qemu-io write",
          .timeLimit(.minutes(1)))
    func statsGrowWithWrites() throws {
        let v = try APICluster(name: "api-stats")
        defer { v.stop() }
        _ = try Self.settled(v)
        let before = try #require(v.get("/v1/stats").json as? [String: Any])
        for key in ["Name", "ReadIOPS", "WriteIOPS", "TotalReadTime", "TotalWriteTime", "TotalReadBlockCount",
                    "TotalWriteBlockCount", "UsedLogicalBlocks", "UsedBlocks", "SectorSize", "Size", "UpTime",
                    "ReplicaCounter", "Replicas", "Status"] {
            #expect(before[key] != nil, "no \(key) in \(before)")
        }
        #expect(before["SectorSize"] as? String == "512")
        #expect(before["Size"] as? String == "\(64 << 20)")
        #expect(before["ReplicaCounter"] as? Int == 3)
        #expect(before["Status"] as? String == "RW")

        try Self.write(v, bytes: 1 << 20)
        let after = try #require(v.get("/v1/stats").json as? [String: Any])
        func n(_ d: [String: Any], _ k: String) -> Int { Int(d[k] as? String ?? "") ?? -1 }
        #expect(n(after, "WriteIOPS") > n(before, "WriteIOPS"), "\(before) -> \(after)")
        #expect(n(after, "TotalWriteBlockCount") >= n(before, "TotalWriteBlockCount") + 2048, "\(before) -> \(after)")
        #expect(n(after, "TotalWriteTime") > n(before, "TotalWriteTime"))
        // The space in use is asked of a replica at most every 5 s: it follows within that.
        var used: [String: Any] = after
        try waitUntil(10, "UsedLogicalBlocks covers the 1 MiB written", describe: { "\(used)" }) {
            used = try v.get("/v1/stats").json as? [String: Any] ?? [:]
            return n(used, "UsedLogicalBlocks") >= 2048 && n(used, "UsedBlocks") >= 2048
        }
        #expect((after["UpTime"] as? Double ?? 0) > 0)
    }

    @Test("GET /metrics is Prometheus text with every openebs_* and cairn_* series; replicas' /metrics too",
          .timeLimit(.minutes(1)))
    func metricsExposition() throws {
        let v = try APICluster(name: "api-metrics")
        defer { v.stop() }
        _ = try Self.settled(v)
        try Self.write(v, bytes: 256 << 10)
        let m = try v.get("/metrics")
        #expect(m.status == 200 && m.headers["content-type"]?.hasPrefix("text/plain") == true, "\(m)")
        let samples = try Self.parsePrometheus(m.text)
        for name in ["openebs_reads", "openebs_writes", "openebs_read_time", "openebs_write_time",
                     "openebs_read_block_count", "openebs_write_block_count", "openebs_volume_status",
                     "openebs_total_replica_count", "openebs_healthy_replica_count", "openebs_degraded_replica_count",
                     "openebs_size_of_volume", "openebs_volume_uptime",
                     "cairn_replica_ejections_total", "cairn_rebuild_bytes_total", "cairn_epoch",
                     "cairn_membership_changes_total", "cairn_rebuild_switch_pause_seconds",
                     "cairn_resync_bytes_total", "cairn_settled_regions_total",
                     "cairn_read_latency_seconds_bucket", "cairn_write_latency_seconds_count"] {
            #expect(samples.contains { $0.name == name }, "no \(name) in\n\(m.text)")
        }
        func value(_ name: String, _ labels: String = "") -> Double? {
            samples.first { $0.name == name && (labels.isEmpty || $0.labels.contains(labels)) }?.value
        }
        #expect(value("openebs_volume_status") == 3, "healthy is 3 in Jiva's encoding")
        #expect(value("openebs_total_replica_count") == 3)
        #expect(value("openebs_healthy_replica_count") == 3)
        #expect((value("openebs_writes") ?? 0) >= 1)
        #expect((value("openebs_write_block_count") ?? 0) >= 512)
        #expect((value("cairn_epoch") ?? 0) >= 1)
        #expect(value("openebs_volume_uptime", #"volName="api-metrics""#) != nil)
        // The write histogram: cumulative buckets, +Inf equal to the count.
        let inf = value("cairn_write_latency_seconds_bucket", #"le="+Inf""#)
        #expect(inf != nil && inf == value("cairn_write_latency_seconds_count") && (inf ?? 0) >= 1)
        let buckets = samples.filter { $0.name == "cairn_write_latency_seconds_bucket" }.map(\.value)
        #expect(buckets == buckets.sorted(), "buckets must be cumulative: \(buckets)")
        Self.expectLoopSeries(samples, m.text)

        for r in v.replicas {
            let rm = try HTTPClient.get(r.http + "/metrics")
            #expect(rm.status == 200)
            let rs = try Self.parsePrometheus(rm.text)
            for name in ["cairn_replica_reads_total", "cairn_replica_writes_total", "cairn_replica_read_bytes_total",
                         "cairn_replica_write_bytes_total", "cairn_replica_rebuild_bytes_written_total",
                         "cairn_replica_errors_total", "cairn_replica_allocated_bytes", "cairn_replica_epoch"] {
                #expect(rs.contains { $0.name == name }, "no \(name) in\n\(rm.text)")
            }
            #expect((rs.first { $0.name == "cairn_replica_writes_total" }?.value ?? 0) >= 1, "\(rm.text)")
            #expect((rs.first { $0.name == "cairn_replica_allocated_bytes" }?.value ?? 0) >= Double(256 << 10))
            Self.expectLoopSeries(rs, rm.text)
        }
    }

    /// The event loop's idle-polling series: a process that has served requests has been idle
    /// between them, so its idle periods (ended by a poll or a sleep) are counted.
    static func expectLoopSeries(_ samples: [Sample], _ text: String) {
        let periods = samples.filter { $0.name == "cairn_loop_idle_periods_total" }
        #expect(Set(periods.map(\.labels)) == [#"{ended="poll"}"#, #"{ended="sleep"}"#], "\(text)")
        #expect(periods.map(\.value).reduce(0, +) >= 1, "\(text)")
        #expect(samples.contains { $0.name == "cairn_loop_idle_poll_yields_total" }, "\(text)")
        let window = samples.first { $0.name == "cairn_loop_idle_poll_window_seconds" }?.value
        #expect(window != nil && window! >= 0 && window! <= 200e-6, "window within --idle-poll's default: \(text)")
    }

    @Test("DELETE a replica -> 204 and 2 listed; quorum-breaking DELETE -> 409; POST it back -> RW again",
          .timeLimit(.minutes(2)))
    func removeAndAddBack() throws {
        let v = try APICluster(name: "api-members")
        defer { v.stop() }
        _ = try Self.settled(v)
        try Self.write(v, bytes: 1 << 20)
        let gone = v.replicas[2]

        let del = try v.request("DELETE", "/v1/replicas/\(gone.id)")
        #expect(del.status == 204, "\(del)\n\(v.controllerLogText)")
        let two = try Self.replicas(v)
        #expect(two.count == 2 && !two.contains { $0["id"] as? String == gone.id }, "\(two)")
        #expect(try v.request("DELETE", "/v1/replicas/\(gone.id)").status == 404)
        // 2 RW left with --min-healthy 2: removing another would break the quorum.
        let refused = try v.request("DELETE", "/v1/replicas/\(v.replicas[0].address)")
        #expect(refused.status == 409, "\(refused)")

        #expect(try v.request("POST", "/v1/replicas", body: "not json").status == 400)
        #expect(try v.request("POST", "/v1/replicas", body: #"{"address":"nowhere"}"#).status == 400)
        let add = try v.request("POST", "/v1/replicas", body: #"{"address":"\#(gone.address)"}"#)
        #expect(add.status == 201, "\(add)")
        #expect((add.json as? [[String: Any]])?.contains { $0["address"] as? String == gone.address } == true, "\(add)")
        #expect(try v.request("POST", "/v1/replicas", body: #"{"address":"\#(gone.address)"}"#).status == 409)

        var last: [[String: Any]] = []
        try waitUntil(60, "the added replica turns RW (rebuilt)", describe: { "\(last)\n\(v.controllerLogText)" }) {
            last = try Self.replicas(v)
            return last.count == 3 && last.allSatisfy { $0["mode"] as? String == "RW" }
        }
        let back = try #require(last.first { $0["address"] as? String == gone.address })
        let rebuild = try #require(back["rebuild"] as? [String: Any], "\(back)")
        #expect(rebuild["finished"] as? Bool == true && (rebuild["percent"] as? Double) == 100, "\(rebuild)")
        #expect(try v.get("/v1/volume").json.flatMap { ($0 as? [String: Any])?["state"] as? String } == "healthy")
        let metrics = try Self.parsePrometheus(v.get("/metrics").text)
        #expect(metrics.contains { $0.name == "cairn_rebuild_progress_ratio" && $0.labels.contains(gone.id) && $0.value == 1 })
        #expect((metrics.first { $0.name == "cairn_rebuild_bytes_total" }?.value ?? 0) >= Double(1 << 20))
        #expect((metrics.first { $0.name == "cairn_replica_ejections_total" }?.value ?? 0) >= 1)
    }

    // MARK: - Prometheus text format

    struct Sample {
        var name: String
        var labels: String
        var value: Double
    }

    /// Parses the text exposition format strictly enough to catch a broken line: every line is
    /// a `# HELP`/`# TYPE` comment or `name{labels} value`; each family has one TYPE line, before
    /// its samples.
    static func parsePrometheus(_ text: String) throws -> [Sample] {
        let name = #"[a-zA-Z_:][a-zA-Z0-9_:]*"#
        let label = #"[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*""#
        let sampleLine = try Regex(#"^(\#(name))(\{(?:\#(label))(?:,\#(label))*\})? ([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$"#)
        let typeLine = try Regex(#"^# TYPE (\#(name)) (counter|gauge|histogram|summary|untyped)$"#)
        let helpLine = try Regex(#"^# HELP \#(name) .*$"#)
        var typed: [String: String] = [:]
        var samples: [Sample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                if let t = try typeLine.wholeMatch(in: String(line)) {
                    let family = String(t.output[1].substring ?? "")
                    if typed[family] != nil { throw HarnessError("two TYPE lines for \(family)") }
                    typed[family] = String(t.output[2].substring ?? "")
                } else if try helpLine.wholeMatch(in: String(line)) == nil {
                    throw HarnessError("bad comment line: \(line)")
                }
                continue
            }
            guard let m = try sampleLine.wholeMatch(in: String(line)) else { throw HarnessError("bad sample line: \(line)") }
            let n = String(m.output[1].substring ?? "")
            let family = typed[n] != nil ? n
                : ["_bucket", "_sum", "_count"].compactMap { n.hasSuffix($0) ? String(n.dropLast($0.count)) : nil }.first ?? n
            guard typed[family] != nil else { throw HarnessError("sample before its TYPE line: \(line)") }
            let raw = String(m.output[3].substring ?? "")
            let value = raw.hasSuffix("Inf") ? (raw.hasPrefix("-") ? -Double.infinity : .infinity) : Double(raw)
            guard let value else { throw HarnessError("bad value: \(line)") }
            samples.append(Sample(name: n, labels: String(m.output[2].substring ?? ""), value: value))
        }
        if samples.isEmpty { throw HarnessError("no samples in:\n\(text)") }
        return samples
    }
}
