// The objects the Kubernetes orchestrator applies for a volume: names that Kubernetes takes,
// replicas pinned to their pools' nodes and kept apart, addresses through Services.
// (Tests/deploy/validate.sh checks the same objects against Kubernetes' schemas.)

import CairnClient
@testable import CairnControl
import Foundation
import Testing

@Suite("Kubernetes objects")
struct KubernetesObjectsTests {
    @Test("object names are DNS-1035 labels of at most 63 characters, stable, and distinct per replica")
    func names() {
        let long = String(repeating: "v", count: 63)
        for n in [KubernetesNames.controller(long), KubernetesNames.replica(long, "r1234567"), KubernetesNames.secret(long),
                  KubernetesNames.controller("demo"), KubernetesNames.replica("demo", "r1234567")] {
            #expect(n.utf8.count <= 63 && Names.isDNSLabel(n) && n.first!.isLetter, "\(n)")
        }
        #expect(KubernetesNames.controller("demo") == "cairn-demo-ctl")
        #expect(KubernetesNames.replica(long, "r1") == KubernetesNames.replica(long, "r1"))
        #expect(KubernetesNames.replica(long, "r1") != KubernetesNames.replica(long, "r2"))
    }

    @Test("the local network keeps every address as before: one host, a port per process")
    func localAddresses() {
        let config = ControlConfig(dataDir: "/d", portalHost: "10.0.0.1", replicaHost: "10.0.0.2")
        let v = volume()
        let r = ReplicaRecord(id: "r1", volume: "demo", pool: "p1", port: 20005, directory: "/p1/demo/r1", role: "active",
                              replaces: nil, createdAt: "")
        #expect(config.portal(v) == "10.0.0.1:20000" && config.portalListen(v) == "10.0.0.1:20000")
        #expect(config.controllerAPI(v) == "http://127.0.0.1:20001" && config.controllerAPIListen(v) == "127.0.0.1:20001")
        #expect(config.replicaAddress(r) == "10.0.0.2:20005" && config.replicaListen(r) == "10.0.0.2:20005")
        #expect(config.processSecretFile("demo") == "/d/volumes/demo/secret")
    }

    @Test("a 3-replica volume: replicas pinned to their pools' nodes with their directories, kept on distinct nodes, reached through Services; all owned by the CairnVolume")
    func threeReplicas() throws {
        let config = ControlConfig(dataDir: "/d", network: .kubernetes(namespace: "cairn-system"))
        let objects = KubernetesObjects(namespace: "cairn-system", image: "img", owner: .init(name: "demo", uid: "u-1"))
        let placed = (1...3).map { i in
            KubernetesObjects.ReplicaPlacement(
                record: ReplicaRecord(id: "r\(i)", volume: "demo", pool: "p\(i)", port: 9700, directory: "/var/lib/cairn/p\(i)/demo/r\(i)",
                                      role: "active", replaces: nil, createdAt: ""),
                node: "node-\(i)", poolPath: "/var/lib/cairn/p\(i)")
        }
        let all = objects.all(volume: volume(), replicas: placed, secret: "abc", config: config)
        #expect(all.map { $0["kind"] } == ["Secret", "Deployment", "Service", "Deployment", "Service", "Deployment", "Service",
                                          "Deployment", "Service"])
        for o in all {
            #expect(o["metadata"]?["namespace"] == "cairn-system")
            #expect(o["metadata"]?["ownerReferences"] == [["apiVersion": "cairn.io/v1alpha1", "kind": "CairnVolume", "name": "demo",
                                                           "uid": "u-1", "controller": true, "blockOwnerDeletion": true]])
        }
        for i in 1...3 {
            let pod = all[2 * i - 1]["spec"]?["template"]?["spec"]
            let terms = pod?["affinity"]?["nodeAffinity"]?["requiredDuringSchedulingIgnoredDuringExecution"]?["nodeSelectorTerms"]
            #expect(terms == [["matchExpressions": [["key": "kubernetes.io/hostname", "operator": "In", "values": .strings(["node-\(i)"])]]]])
            let apart = pod?["affinity"]?["podAntiAffinity"]?["requiredDuringSchedulingIgnoredDuringExecution"]
            #expect(apart == [["labelSelector": ["matchLabels": ["app.kubernetes.io/component": "replica", "cairn.io/volume": "demo"]],
                               "topologyKey": "kubernetes.io/hostname"]])
            #expect(pod?["volumes"] == [
                ["name": "secret", "secret": ["secretName": "cairn-demo-secret", "items": [["key": "secret", "path": "secret"]]]],
                ["name": "pool", "hostPath": ["path": .string("/var/lib/cairn/p\(i)"), "type": "Directory"]],
            ])
            guard case .array(let args)? = pod?["containers"].flatMap({ if case .array(let c) = $0 { return c.first?["args"] } else { return nil } }) else {
                Issue.record("no args")
                continue
            }
            #expect(args.starts(with: ["replica", "--dir", .string("/var/lib/cairn/p\(i)/demo/r\(i)"), "--listen", "0.0.0.0:9700"]))
        }
        // The controller reaches each replica by its Service's name, and initiators the controller by its own.
        let controllerArgs = all[7]["spec"]?["template"]?["spec"]?["containers"]
        guard case .array(let containers)? = controllerArgs, case .array(let args)? = containers.first?["args"] else {
            Issue.record("no controller args")
            return
        }
        for i in 1...3 { #expect(args.contains(.string("cairn-demo-r\(i).cairn-system.svc:9700"))) }
        #expect(args.contains("0.0.0.0:3260"))
        #expect(all[7]["spec"]?["strategy"] == ["type": "Recreate"])
        #expect(config.portal(volume()) == "cairn-demo-ctl.cairn-system.svc:3260")
    }

    private func volume() -> VolumeRecord {
        VolumeRecord(name: "demo", size: 1 << 30, replicaCount: 3, minHealthy: 2, qos: "{}", poolSelector: "{}", phase: "active",
                     portalPort: 20000, apiPort: 20001, generation: 1, createdAt: "", source: nil)
    }
}

@Suite("Kubernetes orchestrator: reading objects back")
struct KubernetesOrchestratorTests {
    @Test("REST paths: the core group under /api/v1, others under /apis/GROUP/VERSION, kinds in the plural")
    func paths() throws {
        #expect(KubernetesAPI.path(apiVersion: "apps/v1", kind: "Deployment", namespace: "ns", name: "d") == "/apis/apps/v1/namespaces/ns/deployments/d")
        #expect(KubernetesAPI.path(apiVersion: "v1", kind: "Service", namespace: "ns") == "/api/v1/namespaces/ns/services")
        #expect(KubernetesAPI.path(apiVersion: "cairn.io/v1alpha1", kind: "CairnVolume", namespace: "ns", name: "v")
                == "/apis/cairn.io/v1alpha1/namespaces/ns/cairnvolumes/v")
        let secret: KubeValue = ["apiVersion": "v1", "kind": "Secret", "metadata": ["name": "s", "namespace": "ns"]]
        #expect(try KubernetesAPI.path(of: secret) == "/api/v1/namespaces/ns/secrets/s")
        #expect(throws: KubernetesError.self) { try KubernetesAPI.path(of: ["kind": "Secret"]) }
    }

    @Test("process keys from labels and back: controller, replica; anything else is not Cairn's")
    func keys() {
        #expect(KubernetesOrchestrator.key(["cairn.io/volume": "v", "app.kubernetes.io/component": "controller"]) == "v/controller")
        #expect(KubernetesOrchestrator.key(["cairn.io/volume": "v", "app.kubernetes.io/component": "replica", "cairn.io/replica": "r1"])
                == "v/replica/r1")
        #expect(KubernetesOrchestrator.key(["cairn.io/volume": "v", "app.kubernetes.io/component": "replica"]) == nil)
        #expect(KubernetesOrchestrator.key(["app.kubernetes.io/component": "controller"]) == nil)
        #expect(KubernetesOrchestrator.parse("v/controller")! == ("v", nil))
        #expect(KubernetesOrchestrator.parse("v/replica/r1")! == ("v", "r1"))
        #expect(KubernetesOrchestrator.parse("v/other") == nil)
    }

    @Test("a process's state from its Deployment and pods, as the API server writes them: ready, restarts, crash loop")
    func status() throws {
        let deployment = try JSONDecoder().decode(KubeDeployment.self, from: Data("""
            {"metadata": {"name": "cairn-v-ctl", "labels": {"cairn.io/volume": "v"}},
             "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}
            """.utf8))
        let looping = try JSONDecoder().decode(KubePod.self, from: Data("""
            {"metadata": {"name": "cairn-v-ctl-5d9c-x", "labels": {}},
             "status": {"phase": "Running", "containerStatuses": [{"name": "controller", "restartCount": 5, "ready": false,
               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
               "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}}]}}
            """.utf8))
        let up = KubernetesOrchestrator.status("v/controller", deployment, [])
        #expect(up.running && up.restarts == 0 && !up.crashLooping && up.lastExit == nil && up.pid == nil)
        let down = KubernetesOrchestrator.status("v/controller", nil, [looping])
        #expect(!down.running && down.restarts == 5 && down.crashLooping && down.lastExit == "CrashLoopBackOff")
        let exited = try JSONDecoder().decode(KubePod.self, from: Data("""
            {"metadata": {"name": "p", "labels": {}}, "status": {"containerStatuses": [{"restartCount": 1,
               "state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}
            """.utf8))
        #expect(KubernetesOrchestrator.status("k", deployment, [exited]).lastExit == "OOMKilled (137)")
    }

    @Test("objects are applied when the Deployment is missing, or when a controller's arguments changed and its pod is not ready; a ready pod, or a replica's, is never restarted for it")
    func reapply() throws {
        func deployment(args: [String], ready: Int) throws -> KubeDeployment {
            let json: [String: Any] = ["metadata": ["name": "d"], "spec": ["template": ["spec": ["containers": [["name": "c", "args": args]]]]],
                                       "status": ["readyReplicas": ready]]
            return try JSONDecoder().decode(KubeDeployment.self, from: JSONSerialization.data(withJSONObject: json))
        }
        let spec = ProcessSpec(key: "v/controller", volume: "v", role: .controller, arguments: ["controller", "--replica", "b:9700"], logFile: "")
        #expect(KubernetesOrchestrator.needsApply(spec, nil))
        #expect(!KubernetesOrchestrator.needsApply(spec, try deployment(args: spec.arguments, ready: 0)))
        #expect(!KubernetesOrchestrator.needsApply(spec, try deployment(args: ["controller", "--replica", "a:9700"], ready: 1)))
        #expect(KubernetesOrchestrator.needsApply(spec, try deployment(args: ["controller", "--replica", "a:9700"], ready: 0)))
        let replica = ProcessSpec(key: "v/replica/r1", volume: "v", role: .replica, arguments: ["replica", "--dir", "/d"], logFile: "")
        #expect(!KubernetesOrchestrator.needsApply(replica, try deployment(args: ["replica", "--dir", "/d", "--size", "1"], ready: 0)))
    }

    @Test("a volume's CairnVolume carries its spec: size, replicas, QoS, selector, a clone's source")
    func cairnVolume() {
        let v = VolumeRecord(name: "v", size: 1 << 30, replicaCount: 3, minHealthy: 2, qos: #"{"iops":500}"#,
                             poolSelector: #"{"tier":"fast"}"#, phase: "active", portalPort: 1, apiPort: 2, generation: 1,
                             createdAt: "", source: #"{"volume":"src","snapshot":"s1","snapshotID":"id","from":[]}"#)
        let cr = KubernetesResources.volume(v, namespace: "ns")
        #expect(cr["kind"] == "CairnVolume" && cr["metadata"]?["name"] == "v" && cr["metadata"]?["namespace"] == "ns")
        #expect(cr["spec"] == ["size": .int(1 << 30), "replicas": 3, "minHealthy": 2, "qos": ["iops": 500],
                               "poolSelector": ["tier": "fast"], "fromSnapshot": "src/s1"])
    }
}

@Suite("Kubernetes state: records as custom resources")
struct KubernetesStateTests {
    private func roundTrip<T: Codable & Equatable>(_ record: T, _ resource: KubeValue) throws -> T? {
        KubernetesState.record(T.self, from: try JSONEncoder().encode(resource))
    }

    @Test("every record comes back from its resource as it was: pools, volumes (a clone's source too), replicas, snapshots, backups")
    func roundTrips() throws {
        let pool = PoolRecord(name: "p1", path: "/var/lib/cairn/p1", labels: #"{"kubernetes.io/hostname":"node-a","tier":"fast"}"#,
                              state: "cordoned", createdAt: "2026-12-07T00:00:00.000Z")
        let volume = VolumeRecord(name: "v", size: 1 << 30, replicaCount: 3, minHealthy: 2, qos: #"{"iops":100}"#, poolSelector: "{}",
                                  phase: "active", portalPort: 20000, apiPort: 20001, generation: 7, createdAt: "2026-12-07T00:00:00.000Z",
                                  source: #"{"from":["a:1"],"snapshot":"s","snapshotID":"i","volume":"src"}"#)
        let replica = ReplicaRecord(id: "r1234567", volume: "v", pool: "p1", port: 20002, directory: "/var/lib/cairn/p1/v/r1234567",
                                    role: "replacement", replaces: "r7654321", createdAt: "2026-12-07T00:00:00.000Z")
        let snapshot = SnapshotRecord(volume: "v", Snapshot(name: "before-upgrade", id: "abc", createdAt: "2026-12-07T00:00:00.000Z",
                                                            parent: nil, size: 1 << 30, bytes: 4096, state: "ready"))
        let backup = BackupRecord(id: "bk-20261207T041700Z-1a2b3c", volume: "v", snapshot: "before-upgrade", target: "s3://bucket/x", createdAt: "2026-12-07T00:00:00.000Z",
                                  state: "done", totalBytes: 10, readBytes: 10, uploadedBytes: 5, newBlocks: 1, mibPerSecond: 60.5,
                                  previous: nil, error: nil)
        #expect(try roundTrip(pool, KubernetesState.pool(pool, namespace: "ns")) == pool)
        #expect(try roundTrip(volume, KubernetesState.volume(volume, namespace: "ns")) == volume)
        #expect(try roundTrip(replica, KubernetesState.replica(replica, namespace: "ns")) == replica)
        #expect(try roundTrip(snapshot, try #require(KubernetesState.snapshot(snapshot, namespace: "ns"))) == snapshot)
        #expect(try roundTrip(backup, KubernetesState.backup(backup, namespace: "ns")) == backup)
        #expect(KubernetesState.pool(pool, namespace: "ns")["spec"]?["node"] == "node-a")
        #expect(KubernetesState.replica(replica, namespace: "ns")["metadata"]?["name"] == "v-r1234567")
        #expect(KubernetesState.backup(backup, namespace: "ns")["metadata"]?["name"] == "bk-20261207t041700z-1a2b3c")
    }

    @Test("a snapshot whose name cannot be in a Kubernetes name is not mirrored")
    func snapshotNames() {
        let s = SnapshotRecord(volume: "v", Snapshot(name: "Before_Upgrade", id: "i", createdAt: "", parent: nil, size: 1, bytes: 0, state: "ready"))
        #expect(KubernetesState.snapshot(s, namespace: "ns") == nil)
    }

    @Test("a CairnPool written by hand becomes a pool on its node; one without a node or an absolute path does not")
    func importedPools() throws {
        let written = Data(#"{"apiVersion":"cairn.io/v1alpha1","kind":"CairnPool","metadata":{"name":"p2","namespace":"ns"},"spec":{"node":"node-b","path":"/var/lib/cairn/p2","labels":{"tier":"ssd"}}}"#.utf8)
        let pool = try #require(KubernetesState.importedPool(written))
        #expect(pool.name == "p2" && pool.path == "/var/lib/cairn/p2" && pool.state == "ready")
        #expect(pool.labelMap == ["tier": "ssd", "kubernetes.io/hostname": "node-b"])
        #expect(!KubernetesState.hasRecord(written))
        #expect(KubernetesState.importedPool(Data(#"{"metadata":{"name":"p3"},"spec":{"path":"/var/lib/cairn/p3"}}"#.utf8)) == nil)
        #expect(KubernetesState.importedPool(Data(#"{"metadata":{"name":"p4"},"spec":{"node":"n","path":"relative"}}"#.utf8)) == nil)
    }
}
