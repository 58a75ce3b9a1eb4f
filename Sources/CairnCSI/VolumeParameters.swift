import Foundation
import CairnClient

/// A StorageClass's parameters, read into what the apiserver's volume create takes. Keys:
/// `replicas`, `minHealthy`, `poolSelector` ("k=v,k2=v2"), and the QoS limits `iops`, `readIops`,
/// `writeIops`, `bandwidth`, `readBandwidth`, `writeBandwidth` (bytes per second, "100MiB"
/// allowed) and `burstSeconds`. Keys under `csi.storage.k8s.io/` are the CO's own and are
/// ignored; any other key is refused, so a misspelt limit is not silently dropped.
struct VolumeParameters: Equatable {
    var replicas: Int?
    var minHealthy: Int?
    var poolSelector: [String: String]?
    var qos = QoS()

    static let keys: Set<String> = ["replicas", "minHealthy", "poolSelector", "iops", "readIops", "writeIops",
                                    "bandwidth", "readBandwidth", "writeBandwidth", "burstSeconds"]

    init(_ parameters: [String: String]) throws {
        for (key, raw) in parameters.sorted(by: { $0.key < $1.key }) {
            if key.hasPrefix("csi.storage.k8s.io/") { continue }
            let value = raw.trimmingCharacters(in: .whitespaces)
            func int() throws -> Int {
                guard let n = Int(value), n > 0 else { throw CSIFailure.invalid("parameter \(key): \"\(raw)\" is not a positive integer") }
                return n
            }
            func rate() throws -> UInt64 {
                guard let n = ByteCount.parse(value) else { throw CSIFailure.invalid("parameter \(key): \"\(raw)\" is not a number (of bytes, units allowed)") }
                return n
            }
            switch key {
            case "replicas": replicas = try int()
            case "minHealthy": minHealthy = try int()
            case "poolSelector": poolSelector = try Self.selector(value)
            case "iops": qos.iops = try rate()
            case "readIops": qos.readIops = try rate()
            case "writeIops": qos.writeIops = try rate()
            case "bandwidth": qos.bandwidth = try rate()
            case "readBandwidth": qos.readBandwidth = try rate()
            case "writeBandwidth": qos.writeBandwidth = try rate()
            case "burstSeconds":
                guard let s = Double(value), s >= 0 else { throw CSIFailure.invalid("parameter burstSeconds: \"\(raw)\" is not a number of seconds") }
                qos.burstSeconds = s
            default:
                throw CSIFailure.invalid("unknown parameter \"\(key.prefix(80))\" (known: \(Self.keys.sorted().joined(separator: ", ")))")
            }
        }
    }

    /// "zone=a,disk=ssd" -> ["zone": "a", "disk": "ssd"].
    static func selector(_ text: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, !kv[0].isEmpty else { throw CSIFailure.invalid("poolSelector: \"\(pair)\" is not KEY=VALUE") }
            out[kv[0]] = kv[1]
        }
        return out
    }
}
