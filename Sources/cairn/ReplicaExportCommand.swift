import ArgumentParser
import CairnIO
import CairnReplica
import CairnWire
import Glibc
import Logging

/// `cairn replica export`: what a stopped replica's directory holds, as a raw image, read from
/// its files alone (no controller): to check a replica, or to recover a volume from one.
struct ReplicaExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write what a replica directory holds (the volume, or one snapshot) to a raw image file, without a controller.",
        discussion: "The replica must not be running (its directory lock is taken). Holes stay holes in the output.")

    @Option(help: "The replica's directory.")
    var dir: String

    @Option(help: "The raw image to write (created or truncated).")
    var to: String

    @Option(help: "A snapshot's name: export what the volume held when it was taken.")
    var snapshot: String?

    func run() async throws {
        _ = bootstrapLogging("warning")
        let logger = Logger(label: "cairn.export")
        try DirectoryLock.acquire(dir)
        let loop = try EventLoop()
        loop.start()
        defer { loop.stopAndJoin() }
        let (dir, to, snapshot) = (self.dir, self.to, self.snapshot)
        try await loop.run { () async throws in
            let store = try ReplicaStore(directory: dir, size: nil, loop: loop, logger: logger)
            var index: LayerIndex?
            if let name = snapshot {
                guard let s = await store.snapshotList().snapshots.first(where: { $0.name == name }) else {
                    await store.close()
                    throw ValidationError("\(dir) holds no snapshot \(name)")
                }
                index = try await store.snapshotIndex(s.id)
            }
            let size = await store.size
            let out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard out >= 0 else { throw ValidationError("cannot open \(to): \(String(cString: strerror(errno)))") }
            defer { close(out) }
            guard ftruncate(out, off_t(size)) == 0 else { throw ValidationError("cannot size \(to)") }
            let chunk = 1 << 20
            let buf = loop.buffers.take(chunk)
            defer { loop.buffers.give(buf) }
            var off: UInt64 = 0
            while off < size {
                let n = Int(min(UInt64(chunk), size - off))
                let piece = IOBuffer(base: buf.base, count: n)
                let data: Bool
                if let index {
                    data = try await store.readSnapshot(index, offset: off, length: n, into: piece)
                } else {
                    try await store.read(offset: off, length: n, into: piece)
                    data = true
                }
                if data {
                    var allZero = true
                    for i in 0..<n where piece.base.load(fromByteOffset: i, as: UInt8.self) != 0 { allZero = false; break }
                    if !allZero {
                        guard pwrite(out, piece.base, n, off_t(off)) == n else { throw ValidationError("write to \(to) failed") }
                    }
                }
                off += UInt64(n)
            }
            guard fsync(out) == 0 else { throw ValidationError("fsync \(to) failed") }
            await store.close()
        }
    }
}
