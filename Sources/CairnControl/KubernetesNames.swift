import Crypto

/// Names of the Kubernetes objects that run a volume: DNS-1035 labels of at most 63 characters
/// (Services need them), the volume's name kept whole when it fits, else its start and a hash.
enum KubernetesNames {
    /// The controller's Deployment and Service (and its pod's prefix).
    static func controller(_ volume: String) -> String { name("cairn-\(volume)-ctl", volume) }
    /// One replica's Deployment and Service.
    static func replica(_ volume: String, _ id: String) -> String { name("cairn-\(volume)-\(id)", volume + "/" + id) }
    /// The Job that removes a deleted replica's directory on its node.
    static func wipe(_ volume: String, _ id: String) -> String { name("cairn-\(volume)-\(id)-wipe", volume + "/" + id + "/wipe") }
    /// The volume's secret (the replica links' key).
    static func secret(_ volume: String) -> String { name("cairn-\(volume)-secret", volume) }
    /// A restore's S3 credentials.
    static func restoreCredentials(_ volume: String) -> String { name("cairn-\(volume)-restore", volume) }

    private static func name(_ wanted: String, _ key: String) -> String {
        if wanted.utf8.count <= 63 { return wanted }
        let hash = SHA256.hash(data: Array(key.utf8)).prefix(4).map { b in
            String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16)
        }.joined()
        var head = String(wanted.prefix(54))
        while head.hasSuffix("-") { head.removeLast() }
        return head + "-" + hash
    }
}

/// The fixed ports of a volume's pods (each pod has an address of its own).
enum KubernetesPorts {
    static let portal = 3260
    static let api = 9500
    static let replica = 9700
    static let replicaHTTP = 9701
}

/// Where a pod finds the Secrets mounted into it.
enum KubernetesPaths {
    static let secret = "/etc/cairn/volume/secret"
    static let cloneSecret = "/etc/cairn/clone-source/secret"
    static let restoreCredentials = "/etc/cairn/restore/credentials"
}
