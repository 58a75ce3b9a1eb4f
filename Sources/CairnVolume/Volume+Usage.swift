import CairnWire

extension Volume {
    /// Bytes allocated in one RW replica's data file (`ReplicaStatus.allocatedBytes`), asked with
    /// the replica protocol's status request on that replica's link. For the HTTP API's stats
    /// only: one control request per call, never on the data path. nil while no RW replica
    /// answers (offline volume, a replica that fails the request).
    public func usedBytes() async -> UInt64? {
        guard decided,
              let m = rwMembers.min(by: { ($0.link?.outstanding ?? 0) < ($1.link?.outstanding ?? 0) }),
              let link = m.link
        else { return nil }
        let epoch = writeEpoch
        // The link's async methods run on the caller's task executor and must be on the loop:
        // a caller from outside (an HTTP handler's task) does not prefer it, so this does.
        let (st, bytes) = await withTaskExecutorPreference(loop.taskExecutor) {
            await link.request(.status, epoch: epoch)
        }
        guard st == .ok, let s = try? WireJSON.decode(ReplicaStatus.self, bytes) else { return nil }
        return s.allocatedBytes
    }
}
