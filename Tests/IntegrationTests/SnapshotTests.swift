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
}
