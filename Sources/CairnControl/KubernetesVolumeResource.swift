import CairnClient
import Foundation

/// A CairnVolume as the API server returns it, read for what the apiserver follows: a spec
/// written by hand (a new volume, or a larger size and new QoS), a deletion (kubectl delete), and
/// the record the apiserver keeps on it.
struct KubeVolumeResource {
    /// Holds the resource until the apiserver has removed the volume's processes and data, so a
    /// `kubectl delete` is a volume delete (and the owned pods stay until then).
    static let finalizer = "cairn.io/volume"

    /// The spec fields of the CRD, as a user writes them.
    struct Spec: Decodable, Equatable {
        var size: UInt64
        var replicas: Int?
        var minHealthy: Int?
        var qos: QoS?
        var poolSelector: [String: String]?
        var fromSnapshot: String?
        var fromBackup: String?
    }

    var name: String
    var resourceVersion: String?
    var generation: Int?
    var deleting: Bool
    var finalizers: [String]
    var spec: Spec?
    var record: VolumeRecord?

    init?(_ object: Data) {
        guard let json = try? JSONSerialization.jsonObject(with: object) as? [String: Any],
              let metadata = json["metadata"] as? [String: Any], let name = metadata["name"] as? String else { return nil }
        self.name = name
        resourceVersion = metadata["resourceVersion"] as? String
        generation = metadata["generation"] as? Int
        deleting = metadata["deletionTimestamp"] != nil
        finalizers = metadata["finalizers"] as? [String] ?? []
        spec = (json["spec"]).flatMap { try? JSONSerialization.data(withJSONObject: $0) }
            .flatMap { try? JSONDecoder().decode(Spec.self, from: $0) }
        record = KubernetesState.record(VolumeRecord.self, from: object)
    }

    /// The spec the apiserver wrote for `v` (KubernetesResources.volume), read back as a user's:
    /// a resource whose spec differs from its record's was edited.
    static func spec(of v: VolumeRecord) -> Spec? {
        guard let s = KubernetesResources.volume(v, namespace: "")["spec"], let data = try? JSONEncoder().encode(s) else { return nil }
        return try? JSONDecoder().decode(Spec.self, from: data)
    }

    /// What an edit of the spec asks to change: nil when nothing (a field left out is not a
    /// change); a larger size and new QoS as a PATCH; anything else is refused (immutable).
    static func change(from wrote: Spec, to edited: Spec) throws -> VolumePatch? {
        func differs<T: Equatable>(_ a: T?, _ b: T?) -> Bool { b != nil && a != b }
        if differs(wrote.replicas, edited.replicas) || differs(wrote.minHealthy, edited.minHealthy)
            || differs(wrote.poolSelector ?? [:], edited.poolSelector) || differs(wrote.fromSnapshot, edited.fromSnapshot)
            || differs(wrote.fromBackup, edited.fromBackup) {
            throw APIFailure.invalid("immutable", "only size and qos change after creation; the rest is written back as it was")
        }
        var patch = VolumePatch()
        if edited.size != wrote.size { patch.size = edited.size }
        if let q = edited.qos, normalized(q) != normalized(wrote.qos) { patch.qos = q }
        return patch == VolumePatch() ? nil : patch
    }

    /// QoS as the record keeps it: an unset burst is one second.
    static func normalized(_ q: QoS?) -> QoS {
        var q = q ?? QoS()
        if q.burstSeconds == nil { q.burstSeconds = 1 }
        return q
    }

    /// What a spec written by hand asks to create.
    func create(_ s: Spec) -> VolumeCreate {
        VolumeCreate(name: name, size: s.size, replicas: s.replicas, minHealthy: s.minHealthy, qos: s.qos,
                     poolSelector: s.poolSelector, fromSnapshot: s.fromSnapshot)
    }

    /// The CairnVolume's status subresource: the volume's state as GET /v1/volumes/{name} shows it,
    /// its replicas with their nodes, and a Ready condition (`since`: when Ready last changed).
    static func status(_ name: String, namespace: String, state: String, message: String?, volume s: VolumeStatus?,
                       nodes: [String: String], observedGeneration: Int?, since: String) -> KubeValue {
        var status: [(String, KubeValue)] = [("state", .string(state))]
        if let s {
            if let e = s.epoch { status.append(("epoch", .int(Int(clamping: e)))) }
            if let z = s.servedSize { status.append(("servedSize", .int(Int(clamping: z)))) }
            status += [("portal", .string(s.portal)), ("iqn", .string(s.iqn)), ("url", .string(s.url))]
            status.append(("replicas", .array(s.replicas.map { r in
                var o: [(String, KubeValue)] = [("id", .string(r.id)), ("pool", .string(r.pool))]
                if let n = nodes[r.pool] { o.append(("node", .string(n))) }
                o += [("address", .string(r.address)), ("role", .string(r.role))]
                if let m = r.mode { o.append(("mode", .string(m))) }
                o.append(("restarts", .int(r.restarts)))
                if let b = r.rebuild { o.append(("rebuild", progress(b))) }
                return .object(o)
            })))
            if let p = s.populate { status.append(("populate", progress(p))) }
        }
        if let message { status.append(("message", .string(message))) }
        if let g = observedGeneration { status.append(("observedGeneration", .int(g))) }
        let ready = s?.serves ?? false
        status.append(("conditions", [[
            "type": "Ready", "status": ready ? "True" : "False", "reason": .string(reason(state)),
            "message": .string(message ?? (ready ? "the volume serves reads and writes" : "the volume is \(state)")),
            "lastTransitionTime": .string(since),
        ]]))
        return [
            "apiVersion": .string(KubernetesResources.apiVersion), "kind": "CairnVolume",
            "metadata": ["name": .string(name), "namespace": .string(namespace)],
            "status": .object(status),
        ]
    }

    private static func progress(_ b: RebuildStatus) -> KubeValue {
        ["kind": .string(b.kind), "totalBytes": .int(Int(clamping: b.totalBytes)), "copiedBytes": .int(Int(clamping: b.copiedBytes)),
         "percent": .int(Int(b.percent.rounded(.down))), "finished": .bool(b.finished)]
    }

    /// A condition's reason from a state: "read-only" -> "ReadOnly".
    static func reason(_ state: String) -> String {
        let r = state.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        return r.first?.isLetter == true ? r : "Unknown"
    }
}
