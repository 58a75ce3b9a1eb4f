import Foundation

/// The processes a volume needs, as the orchestrators run them: the replicas, then the
/// controller, with the arguments this configuration's network gives them.
extension ControlConfig {
    func replicaSpec(_ v: VolumeRecord, _ r: ReplicaRecord) -> ProcessSpec {
        var args = ["replica", "--dir", r.directory, "--listen", replicaListen(r),
                    "--secret-file", processSecretFile(v.name), "--log-level", processLogLevel]
        // The size only creates a replica; a replica that exists keeps its own (a later grow
        // reaches it through its controller). A pod's directory is on its node, out of sight:
        // the size the volume has when the replica is placed, one the replica always had.
        if case .kubernetes = network {
            args += ["--size", "\(v.size)"]
        } else if !FileManager.default.fileExists(atPath: "\(r.directory)/replica.json") {
            args += ["--size", "\(v.size)"]
        }
        return ProcessSpec(key: ProcessKey.replica(r), volume: v.name, role: .replica, arguments: args,
                           logFile: "\(volumeDir(v.name))/replica-\(r.id).log")
    }

    func controllerSpec(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) -> ProcessSpec {
        var args = ["controller", "--name", v.name, "--size", "\(v.size)",
                    "--portal", portalListen(v), "--api", controllerAPIListen(v),
                    "--secret-file", processSecretFile(v.name), "--min-healthy", "\(v.minHealthy)",
                    "--log-level", processLogLevel]
        for r in replicas { args += ["--replica", replicaAddress(r)] }
        if let s = v.cloneSource {
            for a in s.from { args += ["--clone-from", a] }
            args += ["--clone-volume", s.volume, "--clone-snapshot", s.snapshotID, "--clone-secret-file", processCloneSecretFile(v.name)]
        }
        if let r = v.restoreSource {
            args += ["--restore-from", r.target.url, "--restore-backup", r.backup]
            if let e = r.target.endpoint { args += ["--restore-endpoint", e] }
            if let g = r.target.region { args += ["--restore-region", g] }
            if r.target.url.hasPrefix("s3://") { args += ["--restore-credentials-file", processRestoreCredentialsFile(v.name)] }
        }
        let q = v.qosValue
        if let x = q.iops { args += ["--qos-iops", "\(x)"] }
        if let x = q.readIops { args += ["--qos-read-iops", "\(x)"] }
        if let x = q.writeIops { args += ["--qos-write-iops", "\(x)"] }
        if let x = q.bandwidth { args += ["--qos-bandwidth", "\(x)"] }
        if let x = q.readBandwidth { args += ["--qos-read-bandwidth", "\(x)"] }
        if let x = q.writeBandwidth { args += ["--qos-write-bandwidth", "\(x)"] }
        if let b = q.burstSeconds { args += ["--qos-burst", "\(Int((b * 1000).rounded()))ms"] }
        return ProcessSpec(key: ProcessKey.controller(v.name), volume: v.name, role: .controller, arguments: args,
                           logFile: "\(volumeDir(v.name))/controller.log")
    }
}
