import Foundation

/// The mounts this process sees (/proc/self/mountinfo): what is mounted where, so stage,
/// publish and their undoing can tell what is already done.
struct MountEntry: Equatable {
    var mountPoint: String
    var root: String        // the part of the source's filesystem mounted here ("/" unless a bind of a part)
    var fsType: String
    var source: String
    var device: String      // MAJOR:MINOR
    var options: String
}

enum MountTable {
    static func entries() -> [MountEntry] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return MountEntry(mountPoint: unescape(fields[4]), root: unescape(fields[3]), fsType: fields[dash + 1],
                              source: unescape(fields[dash + 2]), device: fields[2], options: fields[5])
        }
    }

    static func isMountPoint(_ path: String) -> Bool {
        let p = normalized(path)
        return entries().contains { $0.mountPoint == p }
    }

    /// The mounts whose filesystem is on block device `device` (MAJOR:MINOR).
    static func mounts(ofDevice device: String) -> [MountEntry] {
        entries().filter { $0.device == device }
    }

    /// MAJOR:MINOR of a block device node, or of the filesystem a path is on.
    static func deviceNumber(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let dev = (st.st_mode & S_IFMT) == S_IFBLK ? st.st_rdev : st.st_dev
        return "\(major(dev)):\(minor(dev))"
    }

    static func normalized(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134.
    private static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 0x5c, i + 3 < b.count, let n = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(n)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func major(_ dev: dev_t) -> UInt64 { (UInt64(dev) >> 8) & 0xfff | (UInt64(dev) >> 32) & ~0xfff }
    private static func minor(_ dev: dev_t) -> UInt64 { UInt64(dev) & 0xff | (UInt64(dev) >> 12) & ~0xff }
}
