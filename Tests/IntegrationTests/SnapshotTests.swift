import Foundation
import Glibc
import Testing

/// Runs one qemu-io command against `url`; the result must succeed (a pattern check that fails
/// prints "Pattern verification failed").
@discardableResult
func qemuChecked(_ url: String, _ command: String) throws -> ToolResult {
    let r = try Tools.run("qemu-io", ["-f", "raw", "-c", command, url], timeout: 60)
    #expect(r.succeeded && !r.output.contains("failed"), "qemu-io \(command): \(r)")
    return r
}

/// What a replica directory holds (the volume, or a snapshot), exported by `cairn replica export`
/// from its files alone.
func exportReplica(_ dir: URL, snapshot: String? = nil) throws -> Data {
    let out = dir.deletingLastPathComponent().appendingPathComponent("\(dir.lastPathComponent)-\(snapshot ?? "head").raw")
    let r = try Tools.run(try CairnController.binary().path,
                          ["replica", "export", "--dir", dir.path, "--to", out.path] + (snapshot.map { ["--snapshot", $0] } ?? []),
                          timeout: 60)
    #expect(r.succeeded, "export of \(dir.lastPathComponent) \(snapshot ?? ""): \(r)")
    defer { try? FileManager.default.removeItem(at: out) }
    return try Data(contentsOf: out)
}

/// The byte ranges of `data` that are not `expected`: [(offset, first wrong byte)], at most 4.
func mismatches(_ data: Data, _ expected: [(offset: Int, length: Int, byte: UInt8)]) -> [String] {
    var out: [String] = []
    for e in expected {
        guard e.offset + e.length <= data.count else { out.append("short: \(data.count) bytes"); continue }
        if let i = data[e.offset..<(e.offset + e.length)].firstIndex(where: { $0 != e.byte }) {
            out.append("at \(i): \(String(data[i], radix: 16)) instead of \(String(e.byte, radix: 16))")
        }
        if out.count >= 4 { break }
    }
    return out
}

let mib = 1 << 20

/// The layout the snapshot tests write: A over 4 MiB, s1; B over [1, 2) MiB and one sector at
/// 3 MiB + 512, s2; C over [1.5, 2.5) MiB and a discard at 3 MiB + 64 KiB.
enum SnapshotPatterns {
    static let atS1: [(offset: Int, length: Int, byte: UInt8)] = [(0, 4 * mib, 0xA1), (4 * mib, 4 * mib, 0)]
    static let atS2: [(offset: Int, length: Int, byte: UInt8)] = [
        (0, mib, 0xA1), (mib, mib, 0xB2), (2 * mib, mib, 0xA1), (3 * mib, 512, 0xA1), (3 * mib + 512, 512, 0xB2),
        (3 * mib + 1024, mib - 1024, 0xA1), (4 * mib, 4 * mib, 0),
    ]
    static let now: [(offset: Int, length: Int, byte: UInt8)] = [
        (0, mib, 0xA1), (mib, mib / 2, 0xB2), (mib + mib / 2, mib, 0xC3), (2 * mib + mib / 2, mib / 2, 0xA1),
        (3 * mib, 512, 0xA1), (3 * mib + 512, 512, 0xB2), (3 * mib + 1024, 64 * 1024 - 1024, 0xA1),
        (3 * mib + 64 * 1024, 64 * 1024, 0), (3 * mib + 128 * 1024, mib - 128 * 1024, 0xA1), (4 * mib, 4 * mib, 0),
    ]

    static func write(_ url: String, api: String) throws {
        try qemuChecked(url, "write -P 0xa1 0 4M")
        try #require(try HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"s1"}"#).status == 201)
        try qemuChecked(url, "write -P 0xb2 1M 1M")
        try qemuChecked(url, "write -P 0xb2 \(3 * mib + 512) 512")
        try #require(try HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"s2"}"#).status == 201)
        try qemuChecked(url, "write -P 0xc3 1536K 1M")
        try qemuChecked(url, "discard \(3 * mib + 64 * 1024) 64K")
    }

    /// qemu-io reads `expected` back through the controller.
    static func check(_ url: String, _ expected: [(offset: Int, length: Int, byte: UInt8)]) throws {
        for e in expected { try qemuChecked(url, "read -P 0x\(String(e.byte, radix: 16)) \(e.offset) \(e.length)") }
    }
}

// Disk- and process-heavy (500 snapshots, fsyncs, merges): beside the control-plane and QoS
// suites on 2 CPUs and one disk it starved their processes (see ExclusiveSuites).
extension ExclusiveSuites {
@Suite("Snapshots", .serialized)
struct SnapshotTests {
    static let api = ["--replica-timeout", "2s", "--api", "127.0.0.1:0"]

    @Test("A, s1, B, s2, C: revert to s1 reads A (through the controller and on each replica alone), to s2 reads A+B; 409 while logged in",
          .timeLimit(.minutes(3)))
    func revertReadsTheSnapshotEverywhere() throws {
        let v = try ReplicatedVolume(name: "snaprevert", size: "8MiB", controllerArguments: Self.api)
        var c = try #require(v.controller)
        let api = try #require(c.api)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        try SnapshotPatterns.write(c.url, api: api)
        try SnapshotPatterns.check(c.url, SnapshotPatterns.now)

        let list = try HTTPClient.get(api + "/v1/snapshots")
        #expect(list.status == 200 && list.text.contains(#""name":"s1""#) && list.text.contains(#""current":"s2""#), "\(list)")
        let again = try HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"s1"}"#)
        #expect(again.status == 409, "\(again)")
        #expect(try HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"../x"}"#).status == 422)
        #expect(try HTTPClient.request("POST", api + "/v1/snapshots/nope/revert").status == 404)

        // An initiator logged in: the revert is refused.
        do {
            let session = try RawISCSIClient(port: c.port)
            try session.login(target: c.iqn)
            let refused = try HTTPClient.request("POST", api + "/v1/snapshots/s1/revert")
            #expect(refused.status == 409 && refused.text.contains("initiator-logged-in"), "\(refused)")
            withExtendedLifetime(session) {}
        }
        try waitUntil(10, "the session to end") {
            try HTTPClient.request("POST", api + "/v1/snapshots/s1/revert").status == 200
        }
        try SnapshotPatterns.check(c.url, SnapshotPatterns.atS1)

        // Each replica alone, from its files.
        #expect(c.stop(timeout: 15, keepFiles: true) == 0)
        for r in v.replicas { r.stop() }
        for r in v.replicas {
            let m = mismatches(try exportReplica(r.directory), SnapshotPatterns.atS1)
            #expect(m.isEmpty, "\(r.directory.lastPathComponent) after the revert to s1: \(m)")
            let s2 = mismatches(try exportReplica(r.directory, snapshot: "s2"), SnapshotPatterns.atS2)
            #expect(s2.isEmpty, "\(r.directory.lastPathComponent) snapshot s2: \(s2)")
        }
        for r in v.replicas { try r.start() }
        try v.startController(port: c.port)
        c = try #require(v.controller)
        let api2 = try #require(c.api)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        try waitUntil(10, "the revert to s2") {
            try HTTPClient.request("POST", api2 + "/v1/snapshots/s2/revert").status == 200
        }
        try SnapshotPatterns.check(c.url, SnapshotPatterns.atS2)
        #expect(c.stop(timeout: 15, keepFiles: true) == 0)
        for r in v.replicas { r.stop() }
        for r in v.replicas {
            let m = mismatches(try exportReplica(r.directory), SnapshotPatterns.atS2)
            #expect(m.isEmpty, "\(r.directory.lastPathComponent) after the revert to s2: \(m)")
        }
    }

    @Test("a replica wiped and rebuilt from scratch holds every snapshot; one killed and back by delta too; a revert served by it alone reads right",
          .timeLimit(.minutes(3)))
    func rebuiltReplicasHoldEverySnapshot() throws {
        let v = try ReplicatedVolume(name: "snaprebuild", size: "8MiB", controllerArguments: Self.api)
        var c = try #require(v.controller)
        let api = try #require(c.api)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        try SnapshotPatterns.write(c.url, api: api)

        // R3 wiped: a new replica in its place, rebuilt in full.
        v.replicas[2].kill9()
        try FileManager.default.removeItem(at: v.replicas[2].directory)
        var mark = v.log.count
        try v.replicas[2].start(size: "8MiB")
        #expect(v.waitForLog("full rebuild from", after: mark, timeout: 20), "\(v.log)")
        #expect(v.waitForLog("is RW at", after: mark, timeout: 30), "\(v.log)")
        // R2 killed, written around, back by delta.
        v.replicas[1].kill9()
        try qemuChecked(c.url, "write -P 0xd4 6M 256K")
        mark = v.log.count
        try v.replicas[1].start()
        #expect(v.waitForLog("delta rebuild from", after: mark, timeout: 20), "\(v.log)")
        #expect(v.waitForLog("is RW at", after: mark, timeout: 30), "\(v.log)")
        try qemuChecked(c.url, "read -P 0xd4 6M 256K")

        #expect(c.stop(timeout: 15, keepFiles: true) == 0)
        for r in v.replicas { r.stop() }
        let withD = SnapshotPatterns.now.filter { $0.offset < 4 * mib } + [(4 * mib, 2 * mib, 0), (6 * mib, 256 << 10, 0xD4)]
        for r in v.replicas[1...] {
            let name = r.directory.lastPathComponent
            #expect(mismatches(try exportReplica(r.directory, snapshot: "s1"), SnapshotPatterns.atS1).isEmpty, "\(name) s1")
            #expect(mismatches(try exportReplica(r.directory, snapshot: "s2"), SnapshotPatterns.atS2).isEmpty, "\(name) s2")
            #expect(mismatches(try exportReplica(r.directory), withD).isEmpty, "\(name) now")
        }

        // Each rebuilt replica alone serves a revert to s1.
        for r in v.replicas[1...] {
            try r.start()
            let alone = try CairnController(name: "snaprebuild", size: "8MiB", arguments: Self.api + ["--min-healthy", "1"],
                                            replicas: [r.port])
            let aloneAPI = try #require(alone.api)
            try waitUntil(20, "the revert on \(r.directory.lastPathComponent) alone") {
                try HTTPClient.request("POST", aloneAPI + "/v1/snapshots/s1/revert").status == 200
            }
            try SnapshotPatterns.check(alone.url, SnapshotPatterns.atS1)
            #expect(alone.stop(timeout: 15) == 0)
            r.stop()
        }
    }

    /// Each replica's snapshots (its HTTP endpoint's list): names, oldest first, with "(deleting)".
    static func replicaSnapshots(_ v: ReplicatedVolume) throws -> [[String]] {
        try v.replicas.map { r in
            let reply = try HTTPClient.get(try #require(r.http) + "/v1/snapshots")
            let list = try #require((reply.json as? [String: Any])?["snapshots"] as? [[String: Any]], "\(reply)")
            return list.map { ($0["name"] as? String ?? "?") + (($0["deleting"] as? Bool) == true ? " (deleting)" : "") }
        }
    }

    static func directoryBytes(_ dir: URL) throws -> UInt64 {
        var total: UInt64 = 0
        var st = stat()
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where stat(dir.path + "/" + name, &st) == 0 {
            total += UInt64(st.st_blocks) * 512
        }
        return total
    }

    @Test("500 snapshots with a write between each, all but one deleted: reads right after each step; the replicas shrink back to one copy plus the kept snapshot",
          .timeLimit(.minutes(5)))
    func fiveHundredSnapshots() throws {
        let v = try ReplicatedVolume(name: "snap500", size: "64MiB", controllerArguments: Self.api,
                                     replicaArguments: ["--http", "127.0.0.1:0"])
        let c = try #require(v.controller)
        let api = try #require(c.api)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        let session = try LibiSCSISession(url: c.url, targetIQN: c.iqn, port: c.port)
        let region = 64 << 10, regions = 400, count = 500, kept = 250
        var model = [UInt8](repeating: 0, count: regions)
        func verify(_ step: String) throws {
            for r in 0..<regions where r % 7 == 0 || model[r] != 0 {
                let got = try session.read16(lba: UInt64(r * region / 512), blocks: region / 512)
                guard got.allSatisfy({ $0 == model[r] }) else {
                    Issue.record("\(step): region \(r) reads \(got.first ?? 0), expected \(model[r])")
                    return
                }
            }
        }
        for i in 0..<count {
            let r = i % regions, byte = UInt8(i % 251 + 1)
            try session.write16(lba: UInt64(r * region / 512), [UInt8](repeating: byte, count: region))
            model[r] = byte
            let reply = try HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"s\#(i)"}"#)
            try #require(reply.status == 201, "snapshot s\(i): \(reply)")
            if i % 100 == 99 { try verify("after \(i + 1) snapshots") }
        }
        var deleted = 0
        for i in 0..<count where i != kept {
            let reply = try HTTPClient.request("DELETE", api + "/v1/snapshots/s\(i)")
            try #require(reply.status == 204, "delete s\(i): \(reply)")
            deleted += 1
            if deleted % 100 == 0 { try verify("after \(deleted) deletes") }
        }
        try waitUntil(120, "every replica down to s\(kept) alone", describe: { "\((try? Self.replicaSnapshots(v)) ?? [])" }) {
            try Self.replicaSnapshots(v).allSatisfy { $0 == ["s\(kept)"] }
        }
        try verify("after the merges")
        // Space: one copy of what the volume holds, plus what the kept snapshot alone holds.
        let list = try #require(try HTTPClient.get(api + "/v1/snapshots").json as? [String: Any])
        let keptBytes = try #require((list["snapshots"] as? [[String: Any]])?.first?["bytes"] as? Int)
        let oneCopy = model.filter { $0 != 0 }.count * region
        let bound = UInt64(Double(oneCopy + keptBytes) * 1.1)
        for r in v.replicas {
            let used = try Self.directoryBytes(r.directory)
            #expect(used <= bound, "\(r.directory.lastPathComponent) holds \(used) bytes; one copy \(oneCopy) + kept \(keptBytes)")
        }
        session.close()
    }

    @Test("through the apiserver and the CLI: snapshot create (named and not), list, volume get shows them, revert, delete, errors as problems",
          .timeLimit(.minutes(3)))
    func cliThroughTheAPIServer() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        let created = try api.cli(["volume", "create", "snapcli", "--size", "32MiB", "--wait"])
        try #require(created.succeeded, "\(created)\n\(api.log)")
        let url = try #require(try api.status("snapcli")["url"] as? String)
        try qemuChecked(url, "write -P 0xa1 0 2M")
        let s1 = try api.cli(["snapshot", "create", "snapcli", "s1"])
        #expect(s1.succeeded && s1.output.contains("s1") && s1.output.contains("ready"), "\(s1)")
        try qemuChecked(url, "write -P 0xb2 1M 2M")
        let unnamed = try #require(try api.cliJSON(["snapshot", "create", "snapcli"]) as? [String: Any])
        let second = try #require(unnamed["name"] as? String)
        #expect(second.hasPrefix("snap-"), "\(unnamed)")
        let list = try #require(try api.cliJSON(["snapshot", "list", "snapcli"]) as? [[String: Any]])
        #expect(list.compactMap { $0["name"] as? String } == ["s1", second], "\(list)")
        #expect(list.last?["parent"] as? String == "s1" && (list.first?["bytes"] as? Int ?? 0) >= 2 << 20, "\(list)")
        let shown = try api.volume("snapcli")["snapshots"] as? [[String: Any]]
        #expect(shown?.count == 2, "\(String(describing: shown))")

        let dup = try api.cli(["snapshot", "create", "snapcli", "s1"])
        #expect(!dup.succeeded && dup.output.contains("already"), "\(dup)")
        let bad = try api.request("POST", "/v1/volumes/snapcli/snapshots", body: #"{"name":"s/1"}"#)
        #expect(bad.status == 422, "\(bad)")
        let none = try api.request("POST", "/v1/volumes/snapcli/snapshots/nope/revert")
        #expect(none.status == 404, "\(none)")
        #expect(try api.request("POST", "/v1/volumes/nope/snapshots", body: #"{"name":"x"}"#).status == 404)

        let revert = try api.cli(["snapshot", "revert", "snapcli", "s1"])
        #expect(revert.succeeded, "\(revert)")
        try qemuChecked(url, "read -P 0xa1 0 2M")
        try qemuChecked(url, "read -P 0 2M 1M")
        let del = try api.cli(["snapshot", "delete", "snapcli", "s1"])
        #expect(del.succeeded, "\(del)")
        try waitUntil(30, "s1 merged away") {
            let l = try api.cliJSON(["snapshot", "list", "snapcli"]) as? [[String: Any]]
            return l?.compactMap { $0["name"] as? String } == [second]
        }
        try qemuChecked(url, "read -P 0xa1 0 2M")
        let events = try api.cli(["events"])
        #expect(events.output.contains("snapshot.created") && events.output.contains("volume.reverted")
                && events.output.contains("snapshot.deleted"), "\(events)")
    }

    @Test("clone: volume create --from-snapshot copies the snapshot (not what was written after) to the new volume's replicas; its source may go once it serves",
          .timeLimit(.minutes(3)))
    func cloneFromSnapshot() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        try #require(try api.cli(["volume", "create", "origin", "--size", "32MiB", "--wait"]).succeeded, "\(api.log)")
        let origin = try #require(try api.status("origin")["url"] as? String)
        try qemuChecked(origin, "write -P 0xa1 0 3M")
        try qemuChecked(origin, "write -P 0xa2 20M 1M")
        try #require(try api.cli(["snapshot", "create", "origin", "s1"]).succeeded)
        try qemuChecked(origin, "write -P 0xb2 0 4M")

        // Bad sources are refused before anything is placed.
        let noSnap = try api.request("POST", "/v1/volumes", body: #"{"name":"c0","size":33554432,"fromSnapshot":"origin/nope"}"#)
        #expect(noSnap.status == 422 && noSnap.text.contains("source-not-found"), "\(noSnap)")
        let small = try api.request("POST", "/v1/volumes", body: #"{"name":"c0","size":4194304,"fromSnapshot":"origin/s1"}"#)
        #expect(small.status == 422 && small.text.contains("invalid-size"), "\(small)")

        let made = try api.cli(["volume", "create", "copy", "--from-snapshot", "origin/s1", "--replicas", "2", "--wait"])
        #expect(made.succeeded, "\(made)\n\(api.log)")
        let v = try api.volume("copy")
        #expect(v["size"] as? Int == 32 << 20 && v["source"] as? String == "origin/s1", "\(v)")
        let populate = (v["status"] as? [String: Any])?["populate"] as? [String: Any]
        #expect(populate?["kind"] as? String == "clone" && populate?["finished"] as? Bool == true
                && populate?["totalBytes"] as? Int == 4 << 20, "\(String(describing: populate))")
        let copy = try #require(try api.status("copy")["url"] as? String)
        try SnapshotPatterns.check(copy, [(0, 3 * mib, 0xA1), (3 * mib, 17 * mib, 0), (20 * mib, mib, 0xA2), (21 * mib, 11 * mib, 0)])
        // The clone is a volume of its own: written apart from its source.
        try qemuChecked(copy, "write -P 0xc3 0 1M")
        try qemuChecked(origin, "read -P 0xb2 0 4M")

        // Served: its source may go, and it goes on.
        #expect(try api.cli(["snapshot", "delete", "origin", "s1"]).succeeded)
        #expect(try api.cli(["volume", "delete", "origin"]).succeeded)
        try qemuChecked(copy, "read -P 0xc3 0 1M")
        try qemuChecked(copy, "read -P 0xa1 1M 2M")
    }

    @Test("kill -9 of the controller during snapshot create, 20 times at seeded moments: every replica lists the same snapshots after",
          .timeLimit(.minutes(5)))
    func controllerKilledDuringSnapshots() throws {
        let seed = ProcessInfo.processInfo.environment["CAIRN_TEST_SEED"].flatMap { UInt64($0) } ?? 0x5EED_0019
        var rng = SplitMix64(seed: seed)
        let v = try ReplicatedVolume(name: "snapkill", size: "32MiB", controllerArguments: Self.api,
                                     replicaArguments: ["--http", "127.0.0.1:0"])
        var c = try #require(v.controller)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        var undone = 0
        for i in 0..<20 {
            let api = try #require(c.api)
            try qemuChecked(c.url, "write -P \(i + 1) \(i)M 64K")
            // Ready for a snapshot (healthy, no resync running), so the kill lands in one.
            try waitUntil(30, "volume healthy after restart \(i)") {
                guard let vol = try HTTPClient.get(api + "/v1/volume").json as? [String: Any] else { return false }
                let resync = vol["resync"] as? [String: Any]
                return vol["state"] as? String == "healthy" && (resync == nil || resync?["finished"] as? Bool == true)
            }
            let delay = rng.next() % 15_000  // µs after the request is sent
            let request = Thread {
                _ = try? HTTPClient.request("POST", api + "/v1/snapshots", body: #"{"name":"k\#(i)"}"#)
            }
            // Every other time one replica is stopped meanwhile, so the snapshot reaches the
            // others first and the kill cuts it short (it answers after the restart began).
            let slow = i % 2 == 1 ? v.replicas[Int(rng.next() % 3)] : nil
            slow?.pause()
            request.start()
            usleep(UInt32(delay))
            c.crash()
            if let r = slow, i % 4 == 3 {
                // And sometimes that replica dies too, so the snapshot never reaches it.
                r.kill9()
                try r.start()
            }
            slow?.resume()
            try v.startController(port: c.port)
            c = try #require(v.controller)
            try waitUntil(30, "the replicas agree on their snapshots after kill \(i + 1) (seed \(seed), \(delay) µs)",
                          describe: { "\((try? Self.replicaSnapshots(v)) ?? [])\n\(v.log.suffix(3000))" }) {
                let lists = try Self.replicaSnapshots(v)
                return lists.allSatisfy { $0 == lists[0] && !$0.contains { $0.hasSuffix("(deleting)") } }
            }
            undone += v.log.components(separatedBy: "is not on every replica").count - 1
        }
        // And the volume holds every write.
        for i in 0..<20 { try qemuChecked(c.url, "read -P \(i + 1) \(i)M 64K") }
        print("snapshots that survived the kills (seed \(seed)): \(try Self.replicaSnapshots(v)[0]); \(undone) cut short and undone")
    }
}
}  // extension ExclusiveSuites

/// A small seeded generator (SplitMix64), so a failing run can be repeated with its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
