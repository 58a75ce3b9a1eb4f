import Foundation

/// The production path: open-iscsi's iscsiadm and the kernel's initiator (iscsid running on the
/// node). The LUN appears as /dev/disk/by-path/ip-PORTAL-iscsi-IQN-lun-N.
struct ISCSIAdmAttacher: Attacher {
    let method = "iscsiadm"
    let tools = ["iscsiadm"]

    // iscsiadm's exit statuses that mean "already so".
    private static let alreadyLoggedIn: Int32 = 15
    private static let noSession: Int32 = 21

    func attach(volume: String, target: ISCSITarget, readOnly: Bool, dir: String,
                record: @Sendable (Attachment) throws -> Void) async throws -> Attachment {
        let portal = try Self.numericPortal(target.portal)
        var a = Attachment(method: method, target: target, device: "")
        try record(a)
        try await Command.check(["iscsiadm", "-m", "node", "-T", target.iqn, "-p", portal, "-o", "new"])
        try await Command.check(["iscsiadm", "-m", "node", "-T", target.iqn, "-p", portal, "--login"],
                                okStatuses: [0, Self.alreadyLoggedIn])
        let link = "/dev/disk/by-path/ip-\(portal)-iscsi-\(target.iqn)-lun-\(target.lun)"
        for _ in 0..<200 {   // udev makes the link a moment after login
            if let device = try? FileManager.default.destinationOfSymbolicLink(atPath: link) {
                a.device = URL(fileURLWithPath: device, relativeTo: URL(fileURLWithPath: "/dev/disk/by-path/")).standardizedFileURL.path
                try record(a)
                return a
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CSIPluginError("logged in to \(target.iqn) at \(portal), but \(link) did not appear in 20 s")
    }

    func detach(_ a: Attachment) async throws {
        let portal = try Self.numericPortal(a.target.portal)
        try await Command.check(["iscsiadm", "-m", "node", "-T", a.target.iqn, "-p", portal, "--logout"],
                                okStatuses: [0, Self.noSession])
        _ = try await Command.run(["iscsiadm", "-m", "node", "-T", a.target.iqn, "-p", portal, "-o", "delete"])
    }

    func refreshSize(_ a: Attachment, size: UInt64) async throws {
        let portal = try Self.numericPortal(a.target.portal)
        try await Command.check(["iscsiadm", "-m", "node", "-T", a.target.iqn, "-p", portal, "--rescan"])
        let name = (a.device as NSString).lastPathComponent
        try? "1".write(toFile: "/sys/class/block/\(name)/device/rescan", atomically: false, encoding: .utf8)
    }

    /// iscsiadm and udev's by-path links name the portal by address: a host name is resolved.
    static func numericPortal(_ portal: String) throws -> String {
        let (host, port) = UserspaceAttacher.split(portal)
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else {
            throw CSIPluginError("cannot resolve the portal host \(host)")
        }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        getnameinfo(first.pointee.ai_addr, first.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST)
        return "\(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(port)"
    }
}
