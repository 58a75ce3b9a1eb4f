import Foundation

/// A QEMU Machine Protocol exchange over a unix socket: greeting, capabilities, one command.
enum QMP {
    @discardableResult
    static func execute(socket path: String, _ command: String, _ arguments: [String: any Sendable] = [:]) async throws -> [String: Any] {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do { continuation.resume(returning: try executeBlocking(path, command, arguments)) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    private static func executeBlocking(_ path: String, _ command: String, _ arguments: [String: any Sendable]) throws -> [String: Any] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CSIPluginError("QMP: socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw CSIPluginError("QMP: socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { throw CSIPluginError("QMP: connect \(path): \(String(cString: strerror(errno)))") }
        var pending = [UInt8]()
        func readMessage() throws -> [String: Any] {
            while true {
                if let nl = pending.firstIndex(of: 0x0a) {
                    let line = Array(pending[..<nl])
                    pending.removeSubrange(...nl)
                    guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
                    if object["event"] != nil { continue }
                    return object
                }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &buffer, buffer.count)
                guard n > 0 else { throw CSIPluginError("QMP: \(path) closed") }
                pending += buffer[..<n]
            }
        }
        func send(_ object: [String: Any]) throws {
            var data = try JSONSerialization.data(withJSONObject: object)
            data.append(0x0a)
            let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n == data.count else { throw CSIPluginError("QMP: write to \(path) failed") }
        }
        _ = try readMessage()  // greeting
        try send(["execute": "qmp_capabilities"])
        _ = try readMessage()
        var request: [String: Any] = ["execute": command]
        if !arguments.isEmpty { request["arguments"] = arguments }
        try send(request)
        if command == "quit" { return [:] }
        let answer = try readMessage()
        if let error = answer["error"] as? [String: Any] {
            throw CSIPluginError("QMP \(command): \(error["desc"] ?? error)")
        }
        return answer
    }
}
