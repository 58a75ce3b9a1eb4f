import CairnClient
import Crypto

/// How CSI's names and ids map to Cairn's. A volume's id is its Cairn name; a snapshot's is
/// "VOLUME/SNAPSHOT", the form the apiserver takes for a clone's source.
enum CSINames {
    /// A Cairn volume name for a CSI volume name: the name itself when it is a DNS-1123 label (as
    /// Kubernetes' "pvc-UUID" is), else "csi-" and 24 hex digits of its SHA-256, so a retried
    /// create finds the same volume.
    static func volume(_ csiName: String) -> String {
        isDNSLabel(csiName) ? csiName : "csi-" + digest(csiName)
    }

    /// A Cairn snapshot name (1 to 63 of letters, digits, '.', '_', '-') for a CSI snapshot name.
    static func snapshot(_ csiName: String) -> String {
        let ok = (1...63).contains(csiName.utf8.count) && csiName.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x2e || c == 0x5f || c == 0x2d
        }
        return ok ? csiName : "csi-" + digest(csiName)
    }

    static func snapshotID(volume: String, snapshot: String) -> String { "\(volume)/\(snapshot)" }

    /// The volume and snapshot of a snapshot id; nil for an id Cairn never gave out.
    static func parseSnapshotID(_ id: String) -> (volume: String, snapshot: String)? {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, isDNSLabel(String(parts[0])), !parts[1].isEmpty else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    /// The snapshot a clone of a volume is copied from (taken for the clone, deleted once it has
    /// served): named for the new volume, so a retried create reuses it.
    static func cloneSnapshot(forVolume name: String) -> String { clonePrefix + digest(name) }
    static let clonePrefix = "csi-clone-"

    static func isDNSLabel(_ s: String) -> Bool { DNSLabel.isValid(s) }

    private static func digest(_ s: String) -> String {
        SHA256.hash(data: Array(s.utf8)).prefix(12).map { b in
            let hex = Array("0123456789abcdef".utf8)
            return String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
        }.joined()
    }
}
