import Foundation

/// For nodes whose kernel has no iSCSI initiator: qemu-storage-daemon logs in to the target
/// (libiscsi) and exports the LUN as a file over FUSE; a loop device makes the file a block
/// device. One process per volume; its QMP socket grows the export when the volume grows
/// (qemu re-reads the LUN's capacity), which a qemu-nbd + nbdfuse chain cannot do while in use.
struct UserspaceAttacher: Attacher {
    let method = "userspace"
    let tools = ["qemu-storage-daemon", "losetup", "fusermount3"]
    /// This node's initiator name.
    let initiator: String

    func attach(volume: String, target: ISCSITarget, readOnly: Bool, dir: String,
                record: @Sendable (Attachment) throws -> Void) async throws -> Attachment {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = dir + "/disk", qmp = dir + "/qmp.sock", pidFile = dir + "/qsd.pid"
        var a = Attachment(method: method, target: target, device: "", pid: nil, qmpSocket: qmp, exportFile: file)
        if !MountTable.isMountPoint(file) {
            if !FileManager.default.fileExists(atPath: file) { _ = FileManager.default.createFile(atPath: file, contents: nil) }
            unlink(qmp)
            let (host, port) = Self.split(target.portal)
            // --daemonize returns once the export is mounted; the daemon's own stdio goes to /dev/null.
            try await Command.check([
                "qemu-storage-daemon",
                "--blockdev", "driver=iscsi,node-name=lun,transport=tcp,portal=\(host):\(port),target=\(target.iqn),lun=\(target.lun),initiator-name=\(initiator)",
                "--export", "type=fuse,id=export,node-name=lun,mountpoint=\(file),writable=\(readOnly ? "off" : "on")",
                "--chardev", "socket,id=qmp,path=\(qmp),server=on,wait=off",
                "--monitor", "chardev=qmp,mode=control",
                "--daemonize", "--pidfile", pidFile,
            ])
        }
        a.pid = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try record(a)
        a.device = try await loopDevice(for: file, readOnly: readOnly)
        try record(a)
        return a
    }

    func detach(_ a: Attachment) async throws {
        if let file = a.exportFile {
            for loop in try await loops(of: file) {
                try await Command.check(["losetup", "-d", loop])
            }
        }
        if let qmp = a.qmpSocket, let pid = a.pid, Self.alive(pid) {
            // quit unmounts the FUSE export and ends the iSCSI session.
            _ = try? await QMP.execute(socket: qmp, "quit")
            for _ in 0..<100 where Self.alive(pid) { try await Task.sleep(for: .milliseconds(50)) }
            if Self.alive(pid) { kill(pid, SIGKILL) }
        }
        if let file = a.exportFile {
            if MountTable.isMountPoint(file) { try await Command.check(["fusermount3", "-u", "-z", file]) }
            let dir = (file as NSString).deletingLastPathComponent
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    func refreshSize(_ a: Attachment, size: UInt64) async throws {
        guard let qmp = a.qmpSocket, let file = a.exportFile else { return }
        try await QMP.execute(socket: qmp, "block_resize", ["node-name": "lun", "size": size])
        // The kernel keeps the FUSE file's attributes for a moment (qemu's export gives them a
        // 1 s lifetime): the loop device reads the size once the file shows it.
        for _ in 0..<50 {
            var st = stat()
            if stat(file, &st) == 0, UInt64(st.st_size) >= size { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        for loop in try await loops(of: file) {
            try await Command.check(["losetup", "-c", loop])
        }
    }

    /// The loop device on `file`, made when there is none. Buffered, not --direct-io: with direct
    /// I/O on qemu 7.2's FUSE export, a filesystem made through the loop device read back
    /// corrupt (seen with a plain file behind the export too, so not the volume); a flush still
    /// reaches the target as SYNCHRONIZE CACHE (loop fsyncs the file, FUSE asks qemu to flush).
    private func loopDevice(for file: String, readOnly: Bool) async throws -> String {
        if let existing = try await loops(of: file).first { return existing }
        var argv = ["losetup", "--find", "--show"]
        if readOnly { argv.append("--read-only") }
        return try await Command.check(argv + [file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Loop devices whose backing file is `file`.
    private func loops(of file: String) async throws -> [String] {
        let r = try await Command.check(["losetup", "--noheadings", "--output", "NAME,BACK-FILE", "--list"])
        return r.stdout.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[1].trimmingCharacters(in: .whitespaces) == file else { return nil }
            return String(parts[0])
        }
    }

    static func alive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        // A zombie (exited, not yet reaped) is not alive.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? false)
    }

    static func split(_ portal: String) -> (String, String) {
        guard let colon = portal.lastIndex(of: ":") else { return (portal, "3260") }
        return (String(portal[..<colon]), String(portal[portal.index(after: colon)...]))
    }
}
