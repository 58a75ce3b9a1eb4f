// A CairnVolume as users write it (kubectl): what an edit asks to change, how its status reads,
// and what the apiserver reads from one the API server returns.

import CairnClient
@testable import CairnControl
import Foundation
import Testing

@Suite("Kubernetes: CairnVolumes written by hand")
struct KubernetesVolumeResourceTests {
    typealias Spec = KubeVolumeResource.Spec

    private let record = VolumeRecord(name: "v", size: 1 << 30, replicaCount: 3, minHealthy: 2, qos: #"{"iops":500,"burstSeconds":1}"#,
                                      poolSelector: "{}", phase: "active", portalPort: 1, apiPort: 2, generation: 1,
                                      createdAt: "", source: nil)

    @Test("the spec written for a record reads back as that record's; a field left out of an edit is no change")
    func unchanged() throws {
        let wrote = try #require(KubeVolumeResource.spec(of: record))
        #expect(wrote == Spec(size: 1 << 30, replicas: 3, minHealthy: 2, qos: QoS(iops: 500)))
        #expect(try KubeVolumeResource.change(from: wrote, to: wrote) == nil)
        #expect(try KubeVolumeResource.change(from: wrote, to: Spec(size: 1 << 30)) == nil, "fields left out")
        #expect(try KubeVolumeResource.change(from: wrote, to: Spec(size: 1 << 30, qos: QoS(iops: 500, burstSeconds: 1))) == nil,
                "burst 1 is the default")
    }

    @Test("a larger size and new QoS are a PATCH; replicas, minHealthy, the selector and the source are refused")
    func edits() throws {
        let wrote = try #require(KubeVolumeResource.spec(of: record))
        #expect(try KubeVolumeResource.change(from: wrote, to: Spec(size: 2 << 30)) == VolumePatch(size: 2 << 30))
        #expect(try KubeVolumeResource.change(from: wrote, to: Spec(size: 1 << 30, qos: QoS(iops: 900)))
                == VolumePatch(qos: QoS(iops: 900)))
        for edit in [Spec(size: 1 << 30, replicas: 5), Spec(size: 1 << 30, minHealthy: 1), Spec(size: 1 << 30, poolSelector: ["a": "b"]),
                     Spec(size: 1 << 30, fromSnapshot: "x/y")] {
            #expect(throws: APIFailure.self) { try KubeVolumeResource.change(from: wrote, to: edit) }
        }
    }

    @Test("a resource as the API server returns it: name, generation, deletion, finalizers, spec, record")
    func parsing() throws {
        let object = try JSONEncoder().encode(KubernetesState.volume(record, namespace: "ns"))
        var json = try #require(try JSONSerialization.jsonObject(with: object) as? [String: Any])
        var metadata = try #require(json["metadata"] as? [String: Any])
        metadata["generation"] = 4
        metadata["deletionTimestamp"] = "2026-12-07T06:00:00Z"
        json["metadata"] = metadata
        let cr = try #require(KubeVolumeResource(try JSONSerialization.data(withJSONObject: json)))
        #expect(cr.name == "v" && cr.generation == 4 && cr.deleting)
        #expect(cr.finalizers == [KubeVolumeResource.finalizer], "the apiserver's CairnVolumes hold its finalizer")
        #expect(cr.record == record && cr.spec == KubeVolumeResource.spec(of: record))
        let hand = try #require(KubeVolumeResource(Data(#"{"metadata":{"name":"h"},"spec":{"size":1048576,"replicas":1}}"#.utf8)))
        let handSpec = try #require(hand.spec)
        #expect(hand.record == nil && !hand.deleting && hand.create(handSpec) == VolumeCreate(name: "h", size: 1 << 20, replicas: 1))
    }

    @Test("status: the volume's state, replicas with their nodes, a Ready condition with a reason Kubernetes takes")
    func status() throws {
        let s = VolumeStatus(state: "degraded", epoch: 7, servedSize: 1 << 30, portal: "p:3260", iqn: "iqn", url: "iscsi://p:3260/iqn/0",
                             controllerAPI: "http://p:9500", controllerPid: nil,
                             replicas: [Replica(id: "r1", volume: "v", pool: "p1", address: "a:9700", directory: "/d", role: "active",
                                                mode: "RW", pid: nil, restarts: 2, rebuild: nil)], message: nil)
        let st = KubeVolumeResource.status("v", namespace: "ns", state: s.state, message: nil, volume: s, nodes: ["p1": "node-a"],
                                           observedGeneration: 3, since: "2026-12-07T06:00:00Z")
        #expect(st["status"]?["state"] == "degraded" && st["status"]?["epoch"] == 7 && st["status"]?["observedGeneration"] == 3)
        #expect(st["status"]?["replicas"] == [["id": "r1", "pool": "p1", "node": "node-a", "address": "a:9700", "role": "active",
                                                "mode": "RW", "restarts": 2]])
        guard case .array(let conditions)? = st["status"]?["conditions"], let ready = conditions.first else {
            Issue.record("no conditions"); return
        }
        #expect(ready["type"] == "Ready" && ready["status"] == "True" && ready["reason"] == "Degraded")
        #expect(KubeVolumeResource.reason("read-only") == "ReadOnly" && KubeVolumeResource.reason("") == "Unknown")
        let refused = KubeVolumeResource.status("h", namespace: "ns", state: "refused", message: "3 replicas need 3 ready pools",
                                                volume: nil, nodes: [:], observedGeneration: nil, since: "t")
        #expect(refused["status"]?["message"] == "3 replicas need 3 ready pools" && refused["status"]?["replicas"] == nil)
    }
}
