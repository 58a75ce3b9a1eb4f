import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A directory as a backup target: each key a file under it. A write goes to a temporary file,
/// is fsynced and renamed into place, and the directory fsynced (DESIGN.md invariant 8).
public struct FileTarget: BackupTarget {
    public let root: String
    public var description: String { "file://\(root)" }

    /// Nothing is created until the first write (a list of a directory that is not there is empty).
    public init(root: String) throws(BackupError) {
        guard !root.contains("\0"), root.utf8.count < 4000 else { throw .invalid("bad directory \(root.prefix(100))") }
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    private func path(_ key: String) throws(BackupError) -> String {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw .invalid("bad key \(key)")
        }
        return root + "/" + key
    }

    public func put(_ key: String, _ data: Data) async throws(BackupError) {
        let p = try path(key)
        let dir = (p as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw .target("cannot create \(dir): \(error)")
        }
        let tmp = p + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .target("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let ok = data.withUnsafeBytes { b -> Bool in
            var off = 0
            while off < b.count {
                let n = write(fd, b.baseAddress! + off, b.count - off)
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        } && fsync(fd) == 0
        Glibc.close(fd)
        guard ok, rename(tmp, p) == 0 else {
            unlink(tmp)
            throw .target("cannot write \(p): \(String(cString: strerror(errno)))")
        }
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { fsync(d); Glibc.close(d) }
    }

    public func get(_ key: String) async throws(BackupError) -> Data? {
        let p = try path(key)
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        do { return try Data(contentsOf: URL(fileURLWithPath: p)) } catch { throw .target("cannot read \(p): \(error)") }
    }

    public func exists(_ key: String) async throws(BackupError) -> Bool {
        FileManager.default.fileExists(atPath: try path(key))
    }

    public func list(_ prefix: String) async throws(BackupError) -> [(key: String, modified: Date)] {
        let base = root + "/" + prefix
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: base, isDirectory: &isDir), isDir.boolValue else { return [] }
        var out: [(key: String, modified: Date)] = []
        guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
        while let rel = e.nextObject() as? String {
            let full = base + (base.hasSuffix("/") ? "" : "/") + rel
            var st = stat()
            guard stat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, !rel.contains(".tmp-") else { continue }
            out.append((prefix + (prefix.hasSuffix("/") || prefix.isEmpty ? "" : "/") + rel,
                        Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec))))
        }
        return out.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) async throws(BackupError) {
        let p = try path(key)
        if unlink(p) != 0 && errno != ENOENT { throw .target("cannot remove \(p): \(String(cString: strerror(errno)))") }
    }

    public func close() async {}
}
