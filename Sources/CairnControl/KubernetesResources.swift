/// Cairn's custom resources (`cairn.io/v1alpha1`) as the apiserver writes them from its records.
enum KubernetesResources {
    static let apiVersion = "cairn.io/v1alpha1"

    /// A volume's CairnVolume: its spec, as the REST API's volume create names it.
    static func volume(_ v: VolumeRecord, namespace: String) -> KubeValue {
        var spec: [(String, KubeValue)] = [("size", .int(Int(v.size))), ("replicas", .int(v.replicaCount)),
                                           ("minHealthy", .int(v.minHealthy))]
        let q = v.qosValue
        var qos: [(String, KubeValue)] = []
        for (k, x) in [("iops", q.iops), ("readIops", q.readIops), ("writeIops", q.writeIops), ("bandwidth", q.bandwidth),
                       ("readBandwidth", q.readBandwidth), ("writeBandwidth", q.writeBandwidth)] {
            if let x { qos.append((k, .int(Int(clamping: x)))) }
        }
        if let b = q.burstSeconds, b != 1 { qos.append(("burstSeconds", .double(b))) }
        if !qos.isEmpty { spec.append(("qos", .object(qos))) }
        let selector: [String: String] = JSONText.decode(v.poolSelector) ?? [:]
        if !selector.isEmpty { spec.append(("poolSelector", .map(selector))) }
        if let s = v.cloneSource { spec.append(("fromSnapshot", .string("\(s.volume)/\(s.snapshot)"))) }
        if let r = v.restoreSource {
            spec.append(("fromBackup", .string(r.backup)))
            var target: [(String, KubeValue)] = [("url", .string(r.target.url))]
            if let e = r.target.endpoint { target.append(("endpoint", .string(e))) }
            if let g = r.target.region { target.append(("region", .string(g))) }
            spec.append(("backupTarget", .object(target)))
        }
        return [
            "apiVersion": .string(apiVersion), "kind": "CairnVolume",
            "metadata": ["name": .string(v.name), "namespace": .string(namespace),
                         "labels": ["app.kubernetes.io/part-of": "cairn", "cairn.io/volume": .string(v.name)]],
            "spec": .object(spec),
        ]
    }
}
