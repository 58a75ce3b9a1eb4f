import Foundation

/// What NodeStageVolume did for a volume, kept in STATE/staged/VOLUME.json (written whole and
/// renamed into place) so unstage, expand and a restarted plugin know what to undo.
struct StagedVolume: Codable, Equatable, Sendable {
    var volumeID: String
    var stagingPath: String
    var attachment: Attachment
    /// volumeMode Block: the device is handed out as it is; else the filesystem mounted at stagingPath.
    var block: Bool
    var fsType: String?
    var readOnly: Bool
}

/// The staged volumes' records in one directory.
struct StagedVolumes: Sendable {
    let dir: String

    init(stateDir: String) throws {
        dir = stateDir + "/staged"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func path(_ volume: String) -> String { "\(dir)/\(volume).json" }

    func load(_ volume: String) -> StagedVolume? {
        guard let data = FileManager.default.contents(atPath: path(volume)) else { return nil }
        return try? JSONDecoder().decode(StagedVolume.self, from: data)
    }

    func save(_ record: StagedVolume) throws {
        let data = try JSONEncoder().encode(record)
        let final = path(record.volumeID), temp = final + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CSIPluginError("cannot write \(temp): \(String(cString: strerror(errno)))") }
        let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard n == data.count, synced, rename(temp, final) == 0 else {
            throw CSIPluginError("cannot write \(final): \(String(cString: strerror(errno)))")
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    func remove(_ volume: String) {
        unlink(path(volume))
    }
}

/// One operation at a time per volume: the CO may send a stage and an unstage of one volume at
/// once (a retry after a timeout), and each must see the other's result, not half of it.
actor VolumeLocks {
    private var held: Set<String> = []
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func withLock<T: Sendable>(_ volume: String, _ body: @Sendable () async throws -> T) async throws -> T {
        while held.contains(volume) {
            await withCheckedContinuation { waiters[volume, default: []].append($0) }
        }
        held.insert(volume)
        defer {
            held.remove(volume)
            if var queue = waiters[volume], !queue.isEmpty {
                queue.removeFirst().resume()
                waiters[volume] = queue.isEmpty ? nil : queue
            }
        }
        return try await body()
    }
}
