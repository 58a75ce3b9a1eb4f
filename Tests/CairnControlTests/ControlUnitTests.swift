// The control plane's decisions on their own: names, spec defaults and refusals, placement,
// restart backoff, adoption's command check, and creates against a real state store.

import CairnClient
@testable import CairnControl
import Foundation
import Testing

@Suite("Control plane units")
struct ControlUnitTests {
    @Test("DNS-1123 labels: lower-case letters, digits and '-', 1-63 characters, alphanumeric at both ends")
    func names() {
        for good in ["a", "demo", "vol-1", "0abc", String(repeating: "a", count: 63)] { #expect(Names.isDNSLabel(good), "\(good)") }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", String(repeating: "a", count: 64), "a b"] {
            #expect(!Names.isDNSLabel(bad), "\(bad)")
        }
    }

    @Test("a create's defaults: 3 replicas, a majority healthy, a 1 s burst; bad values are refused with their type")
    func specDefaultsAndRefusals() throws {
        let c = try VolumeSpec.normalized(VolumeCreate(name: "v", size: 1 << 20))
        #expect(c.replicas == 3 && c.minHealthy == 2 && c.qos?.burstSeconds == 1 && c.poolSelector == [:])
        #expect(try VolumeSpec.normalized(VolumeCreate(name: "v", size: 1 << 20, replicas: 1)).minHealthy == 1)
        #expect(try VolumeSpec.normalized(VolumeCreate(name: "v", size: 1 << 20, replicas: 5)).minHealthy == 3)
        func refused(_ c: VolumeCreate) -> String? {
            do { _ = try VolumeSpec.normalized(c); return nil } catch let f as APIFailure { return f.type } catch { return "\(error)" }
        }
        #expect(refused(VolumeCreate(name: "V", size: 4096)) == "invalid-name")
        #expect(refused(VolumeCreate(name: "v", size: 0)) == "invalid-size")
        #expect(refused(VolumeCreate(name: "v", size: 4097)) == "invalid-size")
        #expect(refused(VolumeCreate(name: "v", size: 4096, replicas: 0)) == "invalid-replicas")
        #expect(refused(VolumeCreate(name: "v", size: 4096, replicas: 6)) == "invalid-replicas")
        #expect(refused(VolumeCreate(name: "v", size: 4096, replicas: 2, minHealthy: 3)) == "invalid-min-healthy")
        #expect(refused(VolumeCreate(name: "v", size: 4096, qos: QoS(writeIops: 0))) == "invalid-qos")
        #expect(refused(VolumeCreate(name: "v", size: 4096, qos: QoS(burstSeconds: 4000))) == "invalid-qos")
        #expect(refused(VolumeCreate(name: "v", size: 4096, poolSelector: ["a b": "c"])) == "invalid-labels")
    }

    @Test("restart backoff: at once, then 1, 2, 4 ... capped at 30 s")
    func backoff() {
        #expect((1...9).map { LocalOrchestrator.backoff(quickExits: $0) } == [0, 1, 2, 4, 8, 16, 30, 30, 30])
        #expect(LocalOrchestrator.backoff(quickExits: 1000) == 30)
    }

    @Test("adoption's command check: the same arguments and a binary of the same name")
    func sameCommand() {
        let rec = ["/a/.build/debug/cairn", "replica", "--dir", "/p/v/r1"]
        #expect(LocalOrchestrator.sameCommand(["/b/release/cairn", "replica", "--dir", "/p/v/r1"], rec))
        #expect(!LocalOrchestrator.sameCommand(["/a/.build/debug/cairn", "replica", "--dir", "/p/v/r2"], rec))
        #expect(!LocalOrchestrator.sameCommand(["/usr/bin/sleep", "replica", "--dir", "/p/v/r1"], rec))
        #expect(!LocalOrchestrator.sameCommand(nil, rec))
    }

    @Test("placement: ready pools with the selector's labels, not the volume's other pools, the most room first")
    func placement() {
        func pool(_ n: String, _ state: PoolState = .ready, labels: [String: String] = [:]) -> PoolRecord {
            PoolRecord(name: n, path: "/tmp", labels: JSONText.encode(labels), state: state.rawValue, createdAt: "")
        }
        let pools = [pool("a"), pool("b", labels: ["disk": "ssd"]), pool("c", .cordoned), pool("d", .draining), pool("e")]
        // All on one filesystem: room is told apart by what is provisioned on each.
        let replicas = [ReplicaRecord(id: "r1", volume: "x", pool: "a", port: 1, directory: "", role: "active", replaces: nil, createdAt: "")]
        let sizes = ["x": UInt64(1 << 30)]
        let names = { (ps: [PoolRecord]) in ps.map(\.name) }
        #expect(names(Placement.candidates(pools: pools, replicas: replicas, sizes: sizes, size: 4096, selector: [:], excluded: [])) == ["b", "e", "a"])
        #expect(names(Placement.candidates(pools: pools, replicas: replicas, sizes: sizes, size: 4096, selector: ["disk": "ssd"], excluded: [])) == ["b"])
        #expect(names(Placement.candidates(pools: pools, replicas: replicas, sizes: sizes, size: 4096, selector: [:], excluded: ["b"])) == ["e", "a"])
        #expect(Placement.candidates(pools: pools, replicas: replicas, sizes: sizes, size: 1 << 62, selector: [:], excluded: []).isEmpty)
    }

    @Test("creates in a real state store: the same spec again finds it, another spec conflicts, ports are never shared")
    func createsInAStore() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-control-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try StateStore(path: dir.appendingPathComponent("state.db").path)
        for p in ["p1", "p2", "p3"] {
            let path = dir.appendingPathComponent(p).path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try store.write { try PoolRecord(name: p, path: path, labels: "{}", state: "ready", createdAt: "").insert($0) }
        }
        let config = ControlConfig(dataDir: dir.path, ports: 35000...35099)
        let spec = try VolumeSpec.normalized(VolumeCreate(name: "v", size: 1 << 20))
        guard case .created(let v) = try VolumeSpec.create(spec, store: store, config: config) else {
            Issue.record("not created")
            return
        }
        guard case .existing = try VolumeSpec.create(spec, store: store, config: config) else {
            Issue.record("the same spec again did not find it")
            return
        }
        var other = spec
        other.size = 2 << 20
        #expect(throws: APIFailure.self) { try VolumeSpec.create(other, store: store, config: config) }
        let w = try VolumeSpec.normalized(VolumeCreate(name: "w", size: 1 << 20, replicas: 2))
        guard case .created(let v2) = try VolumeSpec.create(w, store: store, config: config) else {
            Issue.record("w not created")
            return
        }
        let replicas = try store.replicas()
        #expect(replicas.count == 5)
        #expect(Set(replicas.filter { $0.volume == "v" }.map(\.pool)).count == 3)
        let ports = [v.portalPort, v.apiPort, v2.portalPort, v2.apiPort] + replicas.map(\.port)
        #expect(Set(ports).count == ports.count && ports.allSatisfy { config.ports.contains($0) })
        // Too many replicas for the pools there are.
        #expect(throws: APIFailure.self) {
            try VolumeSpec.create(try VolumeSpec.normalized(VolumeCreate(name: "x", size: 4096, replicas: 4)), store: store, config: config)
        }
    }
}
