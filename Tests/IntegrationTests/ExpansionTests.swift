// Online expansion, from outside: a replicated volume grows through PUT /v1/volume/size while an
// initiator is logged in, and on a restart with a larger --size; qemu-io, iscsi-readcapacity16
// and libiscsi's C API see it; the replicas' files show it.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The last LBA iscsi-readcapacity16 reports for `url`, or nil.
func lastLBA(_ url: String) throws -> UInt64? {
    let r = try Tools.run("iscsi-readcapacity16", [url], timeout: 20)
    guard r.succeeded, let line = r.output.split(separator: "\n").first(where: { $0.hasPrefix("RETURNED LOGICAL BLOCK ADDRESS:") }) else {
        return nil
    }
    return UInt64(line.split(separator: ":").last ?? "")
}

/// Runs qemu-io commands against `url`; true if every one succeeded (a `read -P` fails on a mismatch).
func qemuIO(_ url: String, _ commands: [String]) throws -> ToolResult {
    try Tools.run("qemu-io", ["-f", "raw"] + commands.flatMap { ["-c", $0] } + [url], timeout: 60)
}

@Suite("Online expansion", .serialized)
struct ExpansionTests {
    static let mib = 1 << 20

    #if canImport(CLibiSCSI)
    @Test("a 64 MiB volume grows to 128 MiB under a logged-in session: unit attention, READ CAPACITY, old data, new data on every replica, a replica away during the grow grown and rebuilt",
          .timeLimit(.minutes(3)))
    func growWhileLoggedIn() throws {
        let v = try ReplicatedVolume(name: "grow", controllerArguments: ["--replica-timeout", "2s", "--api", "127.0.0.1:0"])
        let controller = try #require(v.controller)
        let api = try #require(controller.api)
        #expect(v.waitAllRW(timeout: 30))
        let url = controller.url
        let put = try qemuIO(url, ["write -P 0x5a 1M 4M"])
        try #require(put.succeeded && !put.output.contains("error"), "\(put)")

        // A session logged in before the grow, known to the unit (it sent a command).
        let session = try LibiSCSISession(url: url, targetIQN: controller.iqn, port: controller.port)
        defer { session.close() }
        #expect(try session.readCapacity16().lastLBA == UInt64(64 * Self.mib / 512 - 1))

        // One replica is away during the grow.
        let away = v.replicas[2]
        let mark = v.log.count
        away.kill9()
        #expect(v.waitForLog("ejecting replica \(away.replicaID)", after: mark, timeout: 10))

        let grow = try HTTPClient.request("PUT", api + "/v1/volume/size", body: #"{"size": \#(128 * Self.mib)}"#)
        #expect(grow.status == 200, "\(grow)")
        #expect((grow.json as? [String: Any])?["size"] as? Int == 128 * Self.mib, "\(grow)")

        // The session hears of it once (SPC-4: CAPACITY DATA HAS CHANGED), then goes on.
        let tur = try session.testUnitReady()
        #expect(tur.status == 2 && tur.senseKey == 6 && tur.ascq == 0x2A09,
                "expected CHECK CONDITION, UNIT ATTENTION, 2A/09: status \(tur.status) key \(tur.senseKey) ascq \(String(tur.ascq, radix: 16))")
        #expect(try session.testUnitReady().status == 0, "the unit attention is reported once")
        #expect(try session.readCapacity16().lastLBA == UInt64(128 * Self.mib / 512 - 1))
        #expect(try lastLBA(url) == UInt64(128 * Self.mib / 512 - 1), "iscsi-readcapacity16 should show 128 MiB")

        let io = try qemuIO(url, ["read -P 0x5a 1M 4M", "write -P 0x77 100M 1M", "read -P 0x77 100M 1M"])
        #expect(io.succeeded && !io.output.contains("Pattern verification failed") && !io.output.contains("error"), "\(io)")
        let metrics = try HTTPClient.get(api + "/v1/volume").json as? [String: Any]
        #expect(metrics?["size"] as? Int == 128 * Self.mib, "\(String(describing: metrics))")

        // The replica that was away comes back at 64 MiB: grown, then rebuilt by delta.
        let back = v.log.count
        try away.start()
        #expect(v.waitForLog("replica \(away.replicaID) grown to \(128 * Self.mib) bytes before its rebuild", after: back, timeout: 20),
                "\(v.log.dropFirst(back))")
        #expect(v.waitAllRW(timeout: 30), "the returning replica should be rebuilt and RW")

        session.close()
        #expect(controller.stop(timeout: 10) == 0)
        v.controller = nil
        for r in v.replicas { r.stop() }
        for r in v.replicas {
            let bytes = try FileManager.default.attributesOfItem(atPath: r.dataFile.path)[.size] as? Int
            #expect(bytes == 128 * Self.mib, "\(r.replicaID) holds \(bytes ?? -1) bytes")
            #expect(dataFile(of: r, holds: 0x77, at: 100 * Self.mib, length: Self.mib), "\(r.replicaID): the write past 64 MiB")
            #expect(dataFile(of: r, holds: 0x5a, at: Self.mib, length: 4 * Self.mib), "\(r.replicaID): the data from before")
        }
        #expect(try filesIdentical(v.replicas.map(\.dataFile)), "the replicas' data files should be byte-identical")
    }
    #endif

    @Test("a restart with a larger --size grows the volume; a smaller one is refused by the replicas", .timeLimit(.minutes(2)))
    func growOnRestart() throws {
        let v = try ReplicatedVolume(name: "regrow")
        #expect(v.waitAllRW(timeout: 30))
        let put = try qemuIO(try #require(v.controller).url, ["write -P 0x42 60M 4M"])
        try #require(put.succeeded, "\(put)")
        #expect(v.controller?.stop(timeout: 10) == 0)

        let bigger = try CairnController(name: "regrow", size: "96MiB", arguments: ["--replica-timeout", "2s"], replicas: v.ports)
        v.controller = bigger
        #expect(v.waitForLog("grown to \(96 * Self.mib) bytes", timeout: 30), "\(v.log)")
        #expect(try lastLBA(bigger.url) == UInt64(96 * Self.mib / 512 - 1))
        let io = try qemuIO(bigger.url, ["read -P 0x42 60M 4M", "write -P 0x43 90M 1M", "read -P 0x43 90M 1M"])
        #expect(io.succeeded && !io.output.contains("Pattern verification failed"), "\(io)")
        #expect(bigger.stop(timeout: 10) == 0)

        // The volume never shrinks: a controller of the old size is refused by every replica.
        let smaller = try CairnController(name: "regrow", size: "64MiB", arguments: ["--replica-timeout", "2s"], replicas: v.ports)
        v.controller = smaller
        #expect(v.waitForLog("replica refused the handshake: wrongVolume", timeout: 15), "\(v.log)")
        #expect(!v.log.contains("serving from"), "a smaller controller must not serve: \(v.log)")
        #expect(v.replicas.allSatisfy { $0.logText.contains("a volume never shrinks") })
        #expect(smaller.stop(timeout: 10) == 0)
        v.controller = nil
        for r in v.replicas { r.stop() }
        #expect(try filesIdentical(v.replicas.map(\.dataFile)))

        // A replica restarted with the --size it was created with (as an unchanged unit file
        // would) starts with what it holds; one it never had is refused.
        let r = v.replicas[0]
        try r.start(size: "64MiB")
        #expect(r.logText.contains("was grown from the 67108864 asked for"), "\(r.logText)")
        r.stop()
        #expect(throws: (any Error).self, "a size the replica never had must be refused") { try r.start(size: "200MiB") }
    }
}
