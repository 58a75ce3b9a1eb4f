import CairnBackup
import CairnIO
import CairnWire
import Foundation
import Logging

/// A restore's source: one backup on a target. Every block is checked against its hash before
/// a byte of it is written; a missing or corrupt block ends the restore (the volume never
/// serves) with the block named.
public actor BackupSource: VolumePopulator {
    public nonisolated let kind = "restore"
    public nonisolated let source: String
    let spec: TargetSpec
    let backupID: String
    let logger: Logger
    private var repo: BackupRepository?
    private var manifest: Manifest?
    /// Blocks fetched (or being fetched), by index: the copy reads a block in several chunks.
    private var fetching: [Int: Task<Data, any Error>] = [:]
    private var order: [Int] = []

    public init(spec: TargetSpec, backupID: String, logger: Logger) {
        self.spec = spec
        self.backupID = backupID
        self.logger = logger
        source = "\(spec.url) \(backupID)"
    }

    public func open() async throws(PopulateError) -> [Extent] {
        let target: any BackupTarget
        do { target = try spec.open() } catch { throw PopulateError("\(error)", permanent: true) }
        let r = BackupRepository(target: target)
        let m: Manifest
        do { m = try await r.manifest(backupID) } catch {
            throw PopulateError("\(error)", permanent: error.isPermanent)
        }
        repo = r
        manifest = m
        var out: [Extent] = []
        for (i, h) in m.blocks.enumerated() where h != nil {
            let rg = m.range(i)
            if let last = out.indices.last, out[last].end == rg.offset {
                out[last].length += UInt64(rg.length)
            } else {
                out.append(Extent(offset: rg.offset, length: UInt64(rg.length)))
            }
        }
        logger.notice("restore of \(m.volume)/\(m.snapshot) from backup \(m.id) on \(target.description): \(m.stats.dataBlocks) blocks, \(m.stats.dataBytes) bytes")
        return out
    }

    public func read(offset: UInt64, into buffer: IOBuffer) async throws(PopulateError) {
        guard let m = manifest, let repo else { throw PopulateError("the backup is not open") }
        var done = 0
        while done < buffer.count {
            let at = offset + UInt64(done)
            let i = Int(at / UInt64(m.blockSize))
            guard i < m.blocks.count, let hash = m.blocks[i] else { throw PopulateError("offset \(at) is not in the backup") }
            let data: Data
            do { data = try await block(i, hash, m, repo).value } catch {
                throw PopulateError("\(error)", permanent: (error as? BackupError)?.isPermanent ?? false)
            }
            let within = Int(at - m.range(i).offset)
            let n = min(buffer.count - done, data.count - within)
            data.withUnsafeBytes { b in (buffer.base + done).copyMemory(from: b.baseAddress! + within, byteCount: n) }
            done += n
        }
    }

    private func block(_ i: Int, _ hash: String, _ m: Manifest, _ repo: BackupRepository) -> Task<Data, any Error> {
        if let t = fetching[i] { return t }
        let length = m.range(i).length
        let t = Task { try await repo.block(hash, length: length, index: i) }
        fetching[i] = t
        order.append(i)
        // The copy moves forward: a few blocks back are enough.
        while order.count > 16 { fetching[order.removeFirst()] = nil }
        return t
    }

    public func close() async {
        await repo?.target.close()
        fetching = [:]
    }
}

extension BackupError {
    /// A corrupt or missing backup does not heal by trying again; a target that does not
    /// answer may.
    var isPermanent: Bool {
        switch self {
        case .target: return false
        default: return true
        }
    }
}
