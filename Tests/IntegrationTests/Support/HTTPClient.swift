// Test support: a small blocking HTTP/1.1 client over a plain socket (one request per
// connection, `Connection: close`), with send and receive timeouts, for the HTTP API tests.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct HTTPReply: CustomStringConvertible {
    let status: Int
    /// Header names lowercased.
    let headers: [String: String]
    let body: Data

    var text: String { String(decoding: body, as: UTF8.self) }
    /// The body parsed as JSON (nil when it is not JSON).
    var json: Any? { try? JSONSerialization.jsonObject(with: body) }
    var description: String { "HTTP \(status)\n\(text)" }
}

enum HTTPClient {
    /// Sends `method` to `url` (http://HOST:PORT/PATH) and returns the whole answer; throws on a
    /// connection failure, a timeout (`timeout` seconds for each send and receive) or a reply
    /// that is not HTTP.
    static func request(_ method: String, _ url: String, body: String? = nil, headers: [String: String] = [:],
                        timeout: TimeInterval = 10) throws -> HTTPReply {
        guard url.hasPrefix("http://") else { throw HarnessError("not an http:// URL: \(url)") }
        let rest = url.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...]) else {
            throw HarnessError("no port in \(url)")
        }
        let host = String(hostPort[..<colon])

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket(): errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - floor(timeout)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw HarnessError("not an IPv4 address: \(host)") }
        try connectRetryingEINTR(fd, &addr, timeout: timeout, what: hostPort)

        let payload = Array((body ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(hostPort)\r\nConnection: close\r\n"
        if body != nil { head += "Content-Type: application/json\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(payload.count)\r\n\r\n"
        let out = Array(head.utf8) + payload
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw HarnessError("send to \(hostPort): errno \(errno)") }
            sent += n
        }

        var received = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { break }
            guard n > 0 else { throw HarnessError("receive from \(hostPort): errno \(errno) (timeout \(timeout) s?)") }
            received += buf[..<n]
            if let reply = parse(received), reply.complete { return reply.reply }
        }
        guard let reply = parse(received) else { throw HarnessError("not an HTTP reply: \(String(decoding: received, as: UTF8.self))") }
        return reply.reply
    }

    /// The reply in `bytes`, and whether all of its body is there (by Content-Length).
    private static func parse(_ bytes: [UInt8]) -> (reply: HTTPReply, complete: Bool)? {
        let crlf2: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4, let end = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == crlf2 }) else {
            return nil
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let c = line.firstIndex(of: ":") else { continue }
            headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Data(bytes[(end + 4)...])
        let complete = headers["content-length"].flatMap(Int.init).map { body.count >= $0 } ?? false
        return (HTTPReply(status: status, headers: headers, body: body), complete)
    }

    static func get(_ url: String, timeout: TimeInterval = 10) throws -> HTTPReply {
        try request("GET", url, timeout: timeout)
    }
}

/// Polls `condition` every 100 ms until it holds or `timeout` seconds pass; then throws with
/// `what` and the last value `describe` gives.
func waitUntil(_ timeout: TimeInterval, _ what: String, describe: () -> String = { "" },
                _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if (try? condition()) == true { return }
        if Date() > deadline { throw HarnessError("not within \(timeout) s: \(what)\n\(describe())") }
        usleep(100_000)
    }
}

/// connect(2) for the test clients. Other tests in this process install signal handlers (without
/// SA_RESTART), so a blocking connect can return EINTR; an interrupted connect goes on in the
/// background (EALREADY until it is done, then EISCONN), so it is asked again until `timeout`.
func connectRetryingEINTR(_ fd: Int32, _ addr: inout sockaddr_in, timeout: TimeInterval, what: some CustomStringConvertible) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 || errno == EISCONN { return }
        guard (errno == EINTR || errno == EALREADY) && Date() < deadline else {
            throw HarnessError("connect to \(what): errno \(errno)")
        }
        usleep(1000)
    }
}
