// Control plane acceptance (issue 18): a real `cairn apiserver` running real controllers and
// replicas on loopback, driven through the `cairn` CLI and the REST API, with qemu-io and our
// libiscsi writer as the initiators.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

#if canImport(CLibiSCSI)

/// The URL's port and IQN, for the libiscsi writer.
private func target(_ url: String) -> (port: UInt16, iqn: String) {
    // iscsi://127.0.0.1:PORT/IQN/0
    let rest = url.dropFirst("iscsi://".count)
    let parts = rest.split(separator: "/")
    return (UInt16(parts[0].split(separator: ":").last!)!, String(parts[1]))
}

private func qemuIO(_ url: String, _ command: String) throws -> ToolResult {
    try Tools.run("qemu-io", ["-f", "raw", "-c", command, url], timeout: 60)
}

extension ExclusiveSuites {
@Suite("Control plane", .serialized)
struct ControlPlaneTests {
    @Test("lifecycle through the CLI: pools, volumes of 1 and 3 replicas created with --wait, I/O, list healthy, delete removes processes and data",
          .timeLimit(.minutes(4)))
    func lifecycle() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        let pools = try #require(try api.cliJSON(["pool", "list"]) as? [[String: Any]])
        #expect(pools.count == 3)
        #expect(pools.allSatisfy { $0["state"] as? String == "ready" })

        for (name, replicas) in [("one", 1), ("three", 3)] {
            let r = try api.cli(["volume", "create", name, "--size", "64MiB", "--replicas", "\(replicas)", "--wait"])
            #expect(r.succeeded, "\(r)\n\(api.log)")
            #expect(r.output.contains("healthy"), "\(r)")
        }
        var pidsBefore: [Int32] = []
        var dirs: [String] = []
        for name in ["one", "three"] {
            let s = try api.status(name)
            let url = try #require(s["url"] as? String)
            let w = try qemuIO(url, "write -P 0x5a 1M 2M")
            #expect(w.succeeded, "\(w)")
            let rd = try qemuIO(url, "read -P 0x5a 1M 2M")
            #expect(rd.succeeded && !rd.output.contains("Pattern verification failed"), "\(rd)")
            let p = try api.pids(name)
            pidsBefore += [try #require(p.controller)] + p.replicas
            dirs += (s["replicas"] as? [[String: Any]] ?? []).compactMap { $0["directory"] as? String }
        }
        #expect(pidsBefore.count == 2 + 4)
        #expect(dirs.count == 4 && dirs.allSatisfy { FileManager.default.fileExists(atPath: $0 + "/volume.img") })
        // Three replicas on three distinct pools.
        let three = try #require(try api.status("three")["replicas"] as? [[String: Any]])
        #expect(Set(three.compactMap { $0["pool"] as? String }).count == 3)

        // The volume's secret: 0600, passed to its processes by file.
        let secret = api.dataDir.appendingPathComponent("volumes/three/secret").path
        let mode = (try FileManager.default.attributesOfItem(atPath: secret)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o600, "secret mode \(String(mode, radix: 8))")
        // Stats from the controller; a live grow and a live QoS change through the CLI.
        let stats = try #require(try api.cliJSON(["volume", "stats", "three"]) as? [String: Any])
        #expect((stats["writeOps"] as? Int ?? 0) > 0 && stats["size"] as? Int == 64 << 20, "\(stats)")
        let threeURL = try #require(try api.status("three")["url"] as? String)
        let grow = try api.cli(["volume", "expand", "three", "--size", "96MiB"])
        #expect(grow.succeeded, "\(grow)")
        try waitUntil(30, "the controller serves 96 MiB", describe: { api.log }) {
            try api.status("three")["servedSize"] as? Int == 96 << 20
        }
        let info = try Tools.run("qemu-img", ["info", "--output=json", threeURL])
        #expect(info.output.contains("\"virtual-size\": \(96 << 20)"), "\(info)")
        let q = try api.cli(["volume", "qos", "three", "--qos-write-iops", "5000"])
        #expect(q.succeeded, "\(q)")
        let controllerAPI = try #require(try api.status("three")["controllerAPI"] as? String)
        try waitUntil(10, "the controller's QoS has the new limit") {
            (try HTTPClient.get(controllerAPI + "/v1/qos").json as? [String: Any])?["writeIops"] as? Int == 5000
        }

        let list = try api.cli(["volume", "list"])
        #expect(list.succeeded)
        let rows = list.output.split(separator: "\n").filter { $0.hasPrefix("one ") || $0.hasPrefix("three ") }
        #expect(rows.count == 2 && rows.allSatisfy { $0.contains("healthy") }, "\(list)")

        for name in ["one", "three"] {
            let d = try api.cli(["volume", "delete", name])
            #expect(d.succeeded, "\(d)")
        }
        #expect(try api.request("GET", "/v1/volumes/three").status == 404)
        for pid in pidsBefore { #expect(!isAlive(pid), "pid \(pid) still runs after the delete") }
        for dir in dirs { #expect(!FileManager.default.fileExists(atPath: dir), "\(dir) is still there") }
        #expect(!FileManager.default.fileExists(atPath: api.dataDir.appendingPathComponent("volumes/three").path))
        let events = try api.cli(["events"])
        #expect(events.output.contains("volume.created") && events.output.contains("volume.deleted"), "\(events)")
    }

    @Test("kill -9 of a volume's controller under a write-and-verify load: restarted within 2 s, the initiator reconnects, every acknowledged write reads back",
          .timeLimit(.minutes(4)))
    func controllerKilled() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        let r = try api.cli(["volume", "create", "vol", "--size", "64MiB", "--wait"])
        try #require(r.succeeded, "\(r)")
        let url = try #require(try api.status("vol")["url"] as? String)
        let (port, iqn) = target(url)
        let w = ModelWriter(spanBytes: 16 << 20)
        w.start(port: port, iqn: iqn, url: url)
        try waitUntil(10, "writes acknowledged") { w.bytes > 1 << 20 }
        let old = try #require(try api.pids("vol").controller)
        kill(old, SIGKILL)
        let killedAt = Date()
        var restartedAfter: TimeInterval?
        while Date().timeIntervalSince(killedAt) < 10 {
            if let pid = try? api.pids("vol").controller, pid != old, isAlive(pid) {
                restartedAfter = Date().timeIntervalSince(killedAt)
                break
            }
            usleep(20_000)
        }
        let after = try #require(restartedAfter, "the controller was not restarted\n\(api.log)")
        #expect(after < 2.0, "restarted after \(after) s")
        let bytesAtRestart = w.bytes
        try waitUntil(30, "writes go on after the restart", describe: { "\(w.error ?? "")" }) { w.bytes > bytesAtRestart + (1 << 20) }
        #expect(w.stopAndJoin(timeout: 60))
        #expect(w.error == nil, "\(w.error ?? "")")
        #expect(try w.verify(port: port, iqn: iqn, url: url) > 0)
        let events = try api.cli(["events"])
        #expect(events.output.contains("process.restarted"), "\(events)")
    }

    @Test("kill -9 of the apiserver: I/O goes on; a new apiserver adopts every process (none restarted, no rebuild), state intact",
          .timeLimit(.minutes(4)))
    func apiserverKilled() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        for (name, n) in [("a", 3), ("b", 1)] {
            let r = try api.cli(["volume", "create", name, "--size", "32MiB", "--replicas", "\(n)", "--wait"])
            try #require(r.succeeded, "\(r)")
        }
        let before = try api.request("GET", "/v1/volumes")
        let pids = try ["a", "b"].map { try api.pids($0) }
        let url = try #require(try api.status("a")["url"] as? String)
        let lastEvent = try #require((try api.request("GET", "/v1/events").json as? [[String: Any]])?.last?["id"] as? Int)

        api.kill9()
        let w = try qemuIO(url, "write -P 0x77 0 4M")
        #expect(w.succeeded, "I/O with the apiserver down: \(w)")
        let rd = try qemuIO(url, "read -P 0x77 0 4M")
        #expect(rd.succeeded && !rd.output.contains("Pattern verification failed"), "\(rd)")

        try api.start()
        try waitUntil(10, "readyz") { (try? HTTPClient.get(api.url + "/readyz").status) == 200 }
        // Two passes at least, with a status poll.
        usleep(1_500_000)
        for (name, p) in zip(["a", "b"], pids) {
            let now = try api.pids(name)
            #expect(now.controller == p.controller, "\(name)'s controller was restarted")
            #expect(now.replicas == p.replicas, "\(name)'s replicas were restarted")
            for pid in [p.controller!] + p.replicas { #expect(isAlive(pid)) }
        }
        let after = try #require(try api.request("GET", "/v1/events?after=\(lastEvent)").json as? [[String: Any]])
        let types = after.compactMap { $0["type"] as? String }
        #expect(types.filter { $0 == "process.adopted" }.count == 6, "\(types)")
        #expect(!types.contains("process.restarted") && !types.contains("rebuild.started") && !types.contains("replica.ejected"),
                "\(types)")
        // The desired state is what it was (the status part aside).
        func specs(_ r: HTTPReply) -> [String] {
            (r.json as? [[String: Any]] ?? []).map { v in
                var v = v
                v["status"] = nil
                return String(describing: v.sorted { $0.key < $1.key })
            }
        }
        #expect(specs(try api.request("GET", "/v1/volumes")) == specs(before))
        let rd2 = try qemuIO(url, "read -P 0x77 0 4M")
        #expect(rd2.succeeded && !rd2.output.contains("Pattern verification failed"), "\(rd2)")
    }

    @Test("pool drain: every replica on the pool is replaced and rebuilt while a writer runs; data identical, the pool empty",
          .timeLimit(.minutes(5)))
    func drain() throws {
        let api = try CairnAPIServer(pools: 4)
        defer { api.stop() }
        let r = try api.cli(["volume", "create", "vol", "--size", "64MiB", "--replicas", "3", "--wait"])
        try #require(r.succeeded, "\(r)")
        let s = try api.status("vol")
        let url = try #require(s["url"] as? String)
        let replicas = try #require(s["replicas"] as? [[String: Any]])
        let drained = try #require(replicas.first?["pool"] as? String)
        let (port, iqn) = target(url)
        let w = ModelWriter(spanBytes: 32 << 20)
        w.start(port: port, iqn: iqn, url: url)
        try waitUntil(10, "writes acknowledged") { w.bytes > 1 << 20 }
        let d = try api.cli(["pool", "drain", drained, "--wait"], timeout: 180)
        #expect(d.succeeded, "\(d)\n\(api.log)")
        let bytesAfterDrain = w.bytes
        try waitUntil(20, "writes go on after the drain") { w.bytes > bytesAfterDrain + (1 << 20) }
        #expect(w.stopAndJoin(timeout: 60))
        #expect(w.error == nil, "the volume stopped taking writes: \(w.error ?? "")")
        #expect(try w.verify(port: port, iqn: iqn, url: url) > 0)
        try waitUntil(30, "healthy with 3 active RW replicas") {
            let s = try api.status("vol")
            let reps = s["replicas"] as? [[String: Any]] ?? []
            return s["state"] as? String == "healthy" && reps.count == 3
                && reps.allSatisfy { $0["mode"] as? String == "RW" && $0["role"] as? String == "active" }
        }
        let now = try #require(try api.status("vol")["replicas"] as? [[String: Any]])
        #expect(!now.contains { $0["pool"] as? String == drained })
        let pool = try api.request("GET", "/v1/pools/\(drained)").json as? [String: Any]
        #expect(pool?["replicaCount"] as? Int == 0)
        #expect(pool?["state"] as? String == "draining")
        let poolDir = api.directory.appendingPathComponent(drained)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: poolDir.path))?.isEmpty == true)
        // Every replica holds the same bytes (nothing writes now; a settle tick may still touch
        // metadata, never the data file).
        let files = now.compactMap { $0["directory"] as? String }.map { URL(fileURLWithPath: $0 + "/volume.img") }
        #expect(files.count == 3)
        let differences = try files.dropFirst().map { try firstDifference(files[0], $0) }
        #expect(differences.allSatisfy { $0 == nil },
                "replica data differs from \(files[0].path) at \(differences) (\(files.map(\.path))); log:\n\(api.log.suffix(3000))")
        let events = try api.cli(["events"])
        #expect(events.output.contains("replica.replaced"), "\(events)")
    }

    @Test("a replica whose process cannot stay up is replaced on another pool; `replica replace` replaces one on request",
          .timeLimit(.minutes(4)))
    func replacements() throws {
        let api = try CairnAPIServer(pools: 4)
        defer { api.stop() }
        let r = try api.cli(["volume", "create", "vol", "--size", "32MiB", "--replicas", "2", "--wait"])
        try #require(r.succeeded, "\(r)")
        let url = try #require(try api.status("vol")["url"] as? String)
        #expect(try qemuIO(url, "write -P 0x42 0 2M").succeeded)
        // The replica's directory becomes a file: every start of its process fails.
        let first = try #require((try api.status("vol")["replicas"] as? [[String: Any]])?.first)
        let id = try #require(first["id"] as? String), dir = try #require(first["directory"] as? String)
        let pid = try #require((first["pid"] as? Int).map(Int32.init))
        try FileManager.default.removeItem(atPath: dir)
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: dir))
        kill(pid, SIGKILL)
        try waitUntil(90, "the crash-looping replica replaced", describe: { (try? api.cli(["events"]).output) ?? "" }) {
            let reps = try api.status("vol")["replicas"] as? [[String: Any]] ?? []
            return !reps.contains { $0["id"] as? String == id } && reps.count == 2
                && reps.allSatisfy { $0["mode"] as? String == "RW" && $0["role"] as? String == "active" }
        }
        let events = try api.cli(["events"]).output
        #expect(events.contains("its process cannot stay up") && events.contains("replica.replaced"), "\(events)")
        let rd = try qemuIO(url, "read -P 0x42 0 2M")
        #expect(rd.succeeded && !rd.output.contains("Pattern verification failed"), "\(rd)")

        // One more replica (POST .../replicas): placed on a pool the volume does not use, rebuilt, RW.
        let added = try api.request("POST", "/v1/volumes/vol/replicas")
        #expect(added.status == 201, "\(added)")
        try waitUntil(60, "three RW replicas on three pools") {
            let reps = try api.status("vol")["replicas"] as? [[String: Any]] ?? []
            return reps.count == 3 && reps.allSatisfy { $0["mode"] as? String == "RW" }
                && Set(reps.compactMap { $0["pool"] as? String }).count == 3
        }
        #expect(try api.volume("vol")["replicaCount"] as? Int == 3)

        // On request: the CLI waits until the new one is rebuilt and the old one is gone.
        let second = try #require((try api.status("vol")["replicas"] as? [[String: Any]])?.first?["id"] as? String)
        let rr = try api.cli(["replica", "replace", "vol", second, "--wait"], timeout: 120)
        #expect(rr.succeeded, "\(rr)")
        let after = try #require(try api.status("vol")["replicas"] as? [[String: Any]])
        #expect(after.count == 3 && !after.contains { $0["id"] as? String == second })
        #expect(try qemuIO(url, "read -P 0x42 0 2M").succeeded)
    }

    @Test("bad input: each answered 4xx with a problem document, and the state unchanged", .timeLimit(.minutes(3)))
    func badInput() throws {
        let api = try CairnAPIServer(pools: 2)
        defer { api.stop() }
        let ok = try api.request("POST", "/v1/volumes", body: #"{"name":"keep","size":16777216,"replicas":1}"#)
        try #require(ok.status == 201, "\(ok)")
        // The desired state: volumes without their status, pools without their free bytes.
        func state() throws -> [String] {
            let vs = (try api.request("GET", "/v1/volumes").json as? [[String: Any]] ?? []).map { v in
                var v = v
                v["status"] = nil
                return String(describing: v.sorted { $0.key < $1.key })
            }
            let ps = (try api.request("GET", "/v1/pools").json as? [[String: Any]] ?? []).map { p in
                var p = p
                p["freeBytes"] = nil
                return String(describing: p.sorted { $0.key < $1.key })
            }
            return vs + ps
        }
        let before = try state()
        let huge = String(repeating: "x", count: (1 << 20) + 10)
        let cases: [(String, String, String?, Int, String)] = [
            ("POST", "/v1/volumes", #"{"name":"Bad_Name","size":16777216}"#, 422, "invalid-name"),
            ("POST", "/v1/volumes", #"{"name":"-bad","size":16777216}"#, 422, "invalid-name"),
            ("POST", "/v1/volumes", #"{"name":"\#(String(repeating: "a", count: 64))","size":16777216}"#, 422, "invalid-name"),
            ("POST", "/v1/volumes", #"{"name":"zero","size":0}"#, 422, "invalid-size"),
            ("POST", "/v1/volumes", #"{"name":"odd","size":1000}"#, 422, "invalid-size"),
            ("POST", "/v1/volumes", #"{"name":"big","size":1125899906842624,"replicas":1}"#, 422, "insufficient-capacity"),
            ("POST", "/v1/volumes", #"{"name":"big","size":-4096,"replicas":1}"#, 400, "bad-body"),
            ("POST", "/v1/volumes", #"{"name":"r0","size":16777216,"replicas":0}"#, 422, "invalid-replicas"),
            ("POST", "/v1/volumes", #"{"name":"r3","size":16777216,"replicas":3}"#, 422, "not-enough-pools"),
            ("POST", "/v1/volumes", #"{"name":"r9","size":16777216,"replicas":9}"#, 422, "invalid-replicas"),
            ("POST", "/v1/volumes", #"{"name":"mh","size":16777216,"replicas":1,"minHealthy":2}"#, 422, "invalid-min-healthy"),
            ("POST", "/v1/volumes", #"{"name":"mal","size":"#, 400, "bad-body"),
            ("POST", "/v1/volumes", #"["name"]"#, 400, "bad-body"),
            ("POST", "/v1/volumes", #"{"name":"unk","size":16777216,"colour":"blue"}"#, 400, "unknown-field"),
            ("POST", "/v1/volumes", #"{"name":"q","size":16777216,"replicas":1,"qos":{"iops":0}}"#, 422, "invalid-qos"),
            ("POST", "/v1/volumes", #"{"name":"q","size":16777216,"replicas":1,"qos":{"speed":1}}"#, 400, "unknown-field"),
            ("POST", "/v1/volumes", #"{"name":"q","size":16777216,"replicas":1,"qos":[1]}"#, 400, "bad-body"),
            ("POST", "/v1/volumes", #"{"name":"keep","size":33554432,"replicas":1}"#, 409, "volume-exists"),
            ("POST", "/v1/volumes", huge, 413, "body-too-large"),
            ("GET", "/v1/volumes/nope", nil, 404, "not-found"),
            ("PATCH", "/v1/volumes/nope", #"{"size":33554432}"#, 404, "not-found"),
            ("PATCH", "/v1/volumes/keep", #"{"size":4096}"#, 409, "volume-shrink"),
            ("PATCH", "/v1/volumes/keep", #"{"size":33554433}"#, 422, "invalid-size"),
            ("PATCH", "/v1/volumes/keep", #"{"sizes":1}"#, 400, "unknown-field"),
            ("DELETE", "/v1/volumes/nope", nil, 404, "not-found"),
            ("GET", "/v1/volumes/nope/stats", nil, 404, "not-found"),
            ("DELETE", "/v1/volumes/keep/replicas/nope", nil, 404, "not-found"),
            ("GET", "/v1/pools/nope", nil, 404, "not-found"),
            ("PATCH", "/v1/pools/nope", #"{"state":"cordoned"}"#, 404, "not-found"),
            ("PATCH", "/v1/pools/p1", #"{"state":"gone"}"#, 400, "bad-body"),
            ("DELETE", "/v1/pools/nope", nil, 404, "not-found"),
            ("POST", "/v1/pools", #"{"name":"px","path":"relative/dir"}"#, 422, "invalid-path"),
            ("POST", "/v1/pools", #"{"name":"px","path":"/nonexistent/dir"}"#, 422, "invalid-path"),
            ("POST", "/v1/pools", #"{"name":"px","path":"/tmp"}"#, 422, "invalid-path"),
            ("POST", "/v1/pools", #"{"name":"P X","path":"/tmp"}"#, 422, "invalid-name"),
            ("GET", "/v1/events?after=-1", nil, 400, "bad-query"),
        ]
        for (method, path, body, status, type) in cases {
            let r = try api.request(method, path, body: body)
            #expect(r.status == status, "\(method) \(path) \(body?.prefix(80) ?? ""): \(r)")
            #expect(r.headers["content-type"] == "application/problem+json", "\(method) \(path): \(r.headers)")
            let doc = r.json as? [String: Any]
            #expect(doc?["type"] as? String == "https://cairn.io/problems/\(type)", "\(method) \(path): \(r)")
            #expect(doc?["status"] as? Int == status && doc?["detail"] is String)
        }
        // A pool in use cannot go.
        let inUse = try api.request("DELETE", "/v1/pools/\(try #require((try api.status("keep")["replicas"] as? [[String: Any]])?.first?["pool"] as? String))")
        #expect(inUse.status == 409)
        // No token, a wrong token: 401 with a problem document; the unauthenticated endpoints answer.
        for token in ["", "wrong-token-0123456789abcdef"] {
            let r = try HTTPClient.request("GET", api.url + "/v1/volumes", headers: token.isEmpty ? [:] : ["Authorization": "Bearer \(token)"])
            #expect(r.status == 401 && r.headers["content-type"] == "application/problem+json", "\(r)")
            #expect(r.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            let p = try HTTPClient.request("POST", api.url + "/v1/volumes", body: #"{"name":"sneak","size":16777216,"replicas":1}"#,
                                           headers: token.isEmpty ? [:] : ["Authorization": "Bearer \(token)"])
            #expect(p.status == 401)
        }
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            #expect(try HTTPClient.get(api.url + path).status == 200, "\(path)")
        }
        // The CLI prints the server's problem detail and exits non-zero.
        let cli = try api.cli(["volume", "create", "Bad_Name", "--size", "16MiB"])
        #expect(!cli.succeeded && cli.output.contains("not a DNS-1123 label"), "\(cli)")
        #expect(try state() == before)
    }

    @Test("20 concurrent creates of distinct volumes all succeed; 20 of one name create it once and answer the rest 200 or 409 consistently",
          .timeLimit(.minutes(5)))
    func concurrentCreates() throws {
        let api = try CairnAPIServer(pools: 1)
        defer { api.stop() }
        let distinct = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 20) { i in
            let r = try? api.request("POST", "/v1/volumes", body: #"{"name":"d\#(i)","size":16777216,"replicas":1}"#)
            distinct.withLock { $0.append(r?.status ?? -1) }
        }
        #expect(distinct.withLock { $0 } == [Int](repeating: 201, count: 20), "\(distinct.withLock { $0 })")
        let listed = try #require(try api.request("GET", "/v1/volumes").json as? [[String: Any]])
        #expect(listed.count == 20)
        // Distinct ports for every portal, API and replica.
        let portals = Set(listed.compactMap { ($0["status"] as? [String: Any])?["portal"] as? String })
        #expect(portals.count == 20)
        try waitUntil(120, "20 volumes healthy") {
            let vs = try api.request("GET", "/v1/volumes").json as? [[String: Any]] ?? []
            return vs.filter { ($0["status"] as? [String: Any])?["state"] as? String == "healthy" }.count == 20
        }

        // One name, two specs (even: 16 MiB, odd: 32 MiB).
        let answers = Mutex<[(Int, Int)]>([])
        DispatchQueue.concurrentPerform(iterations: 20) { i in
            let size = i % 2 == 0 ? 16 << 20 : 32 << 20
            let r = try? api.request("POST", "/v1/volumes", body: #"{"name":"same","size":\#(size),"replicas":1}"#)
            answers.withLock { $0.append((size, r?.status ?? -1)) }
        }
        let all = answers.withLock { $0 }
        #expect(all.filter { $0.1 == 201 }.count == 1, "\(all)")
        let winner = try #require(all.first { $0.1 == 201 }?.0)
        for (size, status) in all where status != 201 {
            #expect(status == (size == winner ? 200 : 409), "size \(size): \(status) (created with \(winner))")
        }
        #expect(try api.volume("same")["size"] as? Int == winner)
        let count = (try api.request("GET", "/v1/volumes").json as? [[String: Any]])?.count
        #expect(count == 21)
    }
}
}  // extension ExclusiveSuites

#endif
