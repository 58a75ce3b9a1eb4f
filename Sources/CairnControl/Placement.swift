import CairnClient
import Foundation
@_implementationOnly import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Where replicas go, and which ports the volumes' processes listen on.
enum Placement {
    /// Size and free bytes of a filesystem, and which one it is (statvfs's f_fsid).
    typealias Filesystem = (capacity: UInt64, free: UInt64, id: UInt)

    /// The filesystem under `path` now, or nil when it cannot be read.
    static func filesystem(_ path: String) -> Filesystem? {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return nil }
        let unit = UInt64(st.f_frsize)
        return (UInt64(st.f_blocks) * unit, UInt64(st.f_bavail) * unit, st.f_fsid)
    }

    /// A pool as the API shows it, with the capacity of `fs` (its filesystem as measured).
    static func view(_ p: PoolRecord, replicas: [ReplicaRecord], sizes: [String: UInt64], fs: Filesystem?) -> Pool {
        let mine = replicas.filter { $0.pool == p.name }
        let provisioned = mine.reduce(UInt64(0)) { $0 + (sizes[$1.volume] ?? 0) }
        return Pool(name: p.name, path: p.path, labels: p.labelMap, state: p.poolState,
                    capacityBytes: fs?.capacity ?? 0, freeBytes: fs?.free ?? 0, provisionedBytes: provisioned,
                    replicaCount: mine.count)
    }

    /// Whether `size` more bytes fit on the pool's filesystem. With `remote` (a cluster: pools are
    /// on other nodes) a filesystem this process cannot see fits anything: nothing here can
    /// measure it, and replicas are thin (a full disk ejects a replica at write time, as on one host).
    static func fits(_ p: PoolRecord, _ size: UInt64, remote: Bool) -> Bool {
        guard let fs = filesystem(p.path) else { return remote }
        return fs.free >= size
    }

    /// The pools that can take a replica of `size` bytes for a volume: ready, with every label of
    /// `selector`, not among `excluded` (the volume's other replicas' pools), and whose filesystem
    /// has `size` free (see `fits`); the one with the most room first (free bytes less what is
    /// provisioned on it and not yet written, so thin volumes spread), then by name. Pools not
    /// measured here (`remote`) come after the measured ones, the least provisioned first.
    static func candidates(pools: [PoolRecord], replicas: [ReplicaRecord], sizes: [String: UInt64],
                           size: UInt64, selector: [String: String], excluded: Set<String>, remote: Bool = false) -> [PoolRecord] {
        let eligible = pools.filter { p in
            p.poolState == .ready && !excluded.contains(p.name) && selector.allSatisfy { p.labelMap[$0.key] == $0.value }
        }
        // One measurement per filesystem: pools sharing one are told apart by what is provisioned
        // on each, not by what other writers freed or took between two statvfs calls.
        var measured: [UInt: Filesystem] = [:]
        let scored: [(PoolRecord, Bool, Int64)] = eligible.compactMap { p in
            let fs = filesystem(p.path).map { f in measured[f.id, default: f] }
            if let fs { measured[fs.id] = fs }
            let v = view(p, replicas: replicas, sizes: sizes, fs: fs)
            guard fs != nil else {
                return remote ? (p, false, -Int64(clamping: v.provisionedBytes)) : nil
            }
            guard v.freeBytes >= size else { return nil }
            return (p, true, Int64(clamping: v.freeBytes) - Int64(clamping: v.provisionedBytes))
        }
        return scored.sorted { a, b in
            if a.1 != b.1 { return a.1 }
            return a.2 != b.2 ? a.2 > b.2 : a.0.name < b.0.name
        }.map(\.0)
    }

    /// The lowest `count` ports of `range` that no volume or replica holds and that can be bound on
    /// `host` now. Run inside the write transaction that records them, so two creates never get
    /// the same port.
    static func allocatePorts(_ db: Database, count: Int, range: ClosedRange<Int>, host: String) throws -> [Int] {
        var used = Set<Int>()
        for row in try Row.fetchAll(db, sql: "SELECT portalPort, apiPort FROM volume") {
            used.insert(row[0])
            used.insert(row[1])
        }
        for port in try Int.fetchAll(db, sql: "SELECT port FROM replica") { used.insert(port) }
        var out: [Int] = []
        for port in range where !used.contains(port) {
            if canBind(host: host, port: port) { out.append(port) }
            if out.count == count { return out }
        }
        throw PlacementError.noPorts(range)
    }

    /// Whether a TCP listener could bind HOST:PORT now (it is closed again at once).
    static func canBind(host: String, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host == "0.0.0.0" ? "0.0.0.0" : host, &addr.sin_addr) == 1 else { return true }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

enum PlacementError: Error, CustomStringConvertible {
    case noPorts(ClosedRange<Int>)

    var description: String {
        switch self {
        case .noPorts(let r): return "no free port left in \(r.lowerBound)-\(r.upperBound) (--ports)"
        }
    }
}
