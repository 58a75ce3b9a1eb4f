import Crypto
import Foundation

/// The backups on one target: `backups/ID.json` manifests and `blocks/HH/HASH` blocks (zstd
/// frames of the block's bytes, HASH the SHA-256 of those bytes), shared by every backup and
/// volume on the target (a block is stored once).
public struct BackupRepository: Sendable {
    public let target: any BackupTarget
    /// 2 MiB: a changed 4 KiB makes one block to store again.
    public static let blockSize = 2 << 20
    /// A backup running marks itself (`pending/ID`) before it stores a block: a delete then
    /// collects no block newer than the oldest such mark (less this, for clocks apart). Marks
    /// older than a day are of backups that died and are ignored.
    public static let clockSlackSeconds: Double = 60
    public static let pendingMaxAgeSeconds: Double = 86_400

    public init(target: any BackupTarget) {
        self.target = target
    }

    static func manifestKey(_ id: String) -> String { "backups/\(id).json" }
    static func blockKey(_ hash: String) -> String { "blocks/\(hash.prefix(2))/\(hash)" }

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    public static func newID() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "bk-" + f.string(from: Date()) + "-" + String(format: "%06x", UInt32.random(in: 0...0xFF_FFFF))
    }

    /// Every backup's manifest, oldest first (manifests that cannot be read are skipped).
    public func manifests() async throws(BackupError) -> [Manifest] {
        var out: [Manifest] = []
        for (key, _) in try await target.list("backups/") where key.hasSuffix(".json") {
            if let m = try? await manifest(String(key.dropFirst("backups/".count).dropLast(".json".count))) { out.append(m) }
        }
        return out.sorted { $0.createdAt == $1.createdAt ? $0.id < $1.id : $0.createdAt < $1.createdAt }
    }

    public func manifest(_ id: String) async throws(BackupError) -> Manifest {
        guard id.utf8.allSatisfy({ $0 != UInt8(ascii: "/") }), !id.isEmpty else { throw .invalid("bad backup id \(id)") }
        guard let data = try await target.get(Self.manifestKey(id)) else { throw .notFound("no backup \(id) on \(target.description)") }
        do { return try JSONDecoder().decode(Manifest.self, from: data) } catch {
            throw .format("backup \(id)'s manifest cannot be read: \(error)")
        }
    }

    public func putManifest(_ m: Manifest) async throws(BackupError) {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let data: Data
        do { data = try e.encode(m) } catch { throw .format("\(error)") }
        try await target.put(Self.manifestKey(m.id), data)
    }

    /// Stores a block unless it is there already; returns the bytes stored (0 when it was).
    public func putBlock(_ hash: String, _ data: Data) async throws(BackupError) -> UInt64 {
        let key = Self.blockKey(hash)
        if try await target.exists(key) { return 0 }
        let frame: Data
        do { frame = try data.withUnsafeBytes { b in try Zstd.compress(b) } } catch let e as BackupError { throw e } catch {
            throw .format("\(error)")
        }
        try await target.put(key, frame)
        return UInt64(frame.count)
    }

    /// A block's bytes, checked against its hash: a missing or corrupt block is named.
    public func block(_ hash: String, length: Int, index: Int) async throws(BackupError) -> Data {
        guard let frame = try await target.get(Self.blockKey(hash)) else {
            throw .corrupt("block \(index) (\(hash)) is missing from \(target.description)")
        }
        let data: Data
        do { data = try Zstd.decompress(frame, limit: length) } catch {
            throw .corrupt("block \(index) (\(hash)) on \(target.description) cannot be decompressed: \(error)")
        }
        let got = data.withUnsafeBytes { Self.hash($0) }
        guard data.count == length, got == hash else {
            throw .corrupt("block \(index) (\(hash)) on \(target.description) is corrupt: its content hashes to \(got)")
        }
        return data
    }

    public func begin(_ id: String) async throws(BackupError) {
        try await target.put("pending/\(id)", Data(Date().description.utf8))
    }

    public func end(_ id: String) async {
        try? await target.delete("pending/\(id)")
    }

    /// Deletes a backup, then every block no other backup names (and no running backup may
    /// have stored). Returns the blocks removed.
    @discardableResult
    public func delete(_ id: String) async throws(BackupError) -> Int {
        _ = try await manifest(id)
        try await target.delete(Self.manifestKey(id))
        var keep = Set<String>()
        for m in try await manifests() { for case let h? in m.blocks { keep.insert(h) } }
        var removed = 0
        let now = Date()
        let running = try await target.list("pending/").map(\.modified)
            .filter { now.timeIntervalSince($0) < Self.pendingMaxAgeSeconds }
        let cutoff = (running.min() ?? now).addingTimeInterval(-Self.clockSlackSeconds)
        for (key, modified) in try await target.list("blocks/") {
            let hash = String(key.split(separator: "/").last ?? "")
            guard !keep.contains(hash), running.isEmpty || modified < cutoff else { continue }
            try await target.delete(key)
            removed += 1
        }
        return removed
    }
}
