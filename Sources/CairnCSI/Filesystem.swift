import Foundation

/// Filesystems on attached volumes: find, make, mount, grow. ext4 and xfs, with their own tools.
enum Filesystem {
    /// The filesystem on `device`, or nil when it holds none. blkid's exit 2 means "nothing
    /// found"; anything else that fails is thrown, so a device that cannot be read is never
    /// formatted.
    static func type(of device: String) async throws -> String? {
        let r = try await Command.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device])
        if r.status == 2 { return nil }
        guard r.status == 0 else { throw CommandError(argv: ["blkid", device], result: r) }
        let t = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    static func make(_ fs: String, on device: String) async throws {
        switch fs {
        case "ext4": try await Command.check(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", device])
        case "xfs": try await Command.check(["mkfs.xfs", "-q", "-K", device])
        default: throw CSIPluginError("cannot make a \(fs) filesystem")
        }
    }

    static func mount(_ device: String, at path: String, type: String, options: [String]) async throws {
        var argv = ["mount", "-t", type]
        if !options.isEmpty { argv += ["-o", options.joined(separator: ",")] }
        try await Command.check(argv + [device, path])
    }

    static func unmount(_ path: String) async throws {
        try await Command.check(["umount", path])
    }

    /// Binds `source` (a directory or a device node) at `target`, read-only if asked (a bind
    /// takes the flag only on a remount).
    static func bind(_ source: String, at target: String, readOnly: Bool) async throws {
        try await Command.check(["mount", "--bind", source, target])
        if readOnly {
            do { try await Command.check(["mount", "-o", "remount,bind,ro", target]) } catch {
                try? await unmount(target)
                throw error
            }
        }
    }

    /// Grows the filesystem on `device`, mounted at `mountedAt`, to the device's size. Online when
    /// the kernel lets this process (ext4 needs CAP_SYS_RESOURCE); else, when nothing but the
    /// staging mount uses it and `offlineAllowed`, unmounted for the moment it takes.
    static func grow(_ fs: String, device: String, mountedAt: String, offlineAllowed: Bool) async throws {
        switch fs {
        case "xfs":
            try await Command.check(["xfs_growfs", mountedAt])
        case "ext4":
            let r = try await Command.run(["resize2fs", device])
            if r.status == 0 { return }
            guard offlineAllowed, r.stderr.contains("Permission denied") || r.stderr.contains("Operation not permitted") else {
                throw CommandError(argv: ["resize2fs", device], result: r)
            }
            let options = MountTable.entries().last { $0.mountPoint == MountTable.normalized(mountedAt) }?.options
            try await unmount(mountedAt)
            var failure: (any Error)?
            do { try await growOffline(fs, device: device) } catch { failure = error }
            try await mount(device, at: mountedAt, type: fs, options: options.map { [$0] } ?? [])
            if let failure { throw failure }
        default:
            throw CSIPluginError("cannot grow a \(fs) filesystem")
        }
    }

    /// Grows an unmounted ext4 to its device when the device is larger (a volume grown while not
    /// staged). xfs grows only mounted: left to NodeExpandVolume.
    static func growOffline(_ fs: String, device: String) async throws {
        guard fs == "ext4", let deviceBytes = deviceSize(device) else { return }
        let info = try await Command.check(["dumpe2fs", "-h", device]).stdout
        func field(_ name: String) -> UInt64? {
            info.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) }
        }
        guard let blocks = field("Block count"), let blockSize = field("Block size"), blocks * blockSize + blockSize <= deviceBytes else { return }
        // e2fsck's 1 means "errors corrected": the filesystem is fine to grow then.
        try await Command.check(["e2fsck", "-f", "-p", device], okStatuses: [0, 1])
        try await Command.check(["resize2fs", device])
    }

    /// A block device's size in bytes.
    static func deviceSize(_ device: String) -> UInt64? {
        let fd = open(device, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let end = lseek(fd, 0, SEEK_END)
        return end >= 0 ? UInt64(end) : nil
    }
}
