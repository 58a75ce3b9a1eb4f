import CCairn
import Glibc

/// The waiters of one socket in the loop's epoll set (edge-triggered). A waiter is parked only
/// after the socket said it had nothing more (EAGAIN, or a short read with no read event since),
/// on the loop thread, so no edge can be missed between the two.
final class SocketRegistration {
    var readWaiter: UnsafeContinuation<Void, Never>?
    var writeWaiter: UnsafeContinuation<Void, Never>?
    var hangup = false
    /// A read event came while no reader waited: data may have arrived since the last read.
    var readable = false

    func signal(events: UInt32) {
        if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 { hangup = true }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue) != 0 {
            if let w = readWaiter {
                readWaiter = nil
                w.resume()
            } else {
                readable = true
            }
        }
        if events & (EPOLLOUT.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0, let w = writeWaiter {
            writeWaiter = nil
            w.resume()
        }
    }

    func wakeAll() {
        hangup = true
        if let w = readWaiter { readWaiter = nil; w.resume() }
        if let w = writeWaiter { writeWaiter = nil; w.resume() }
    }
}

extension EventLoop {
    func register(fd: Int32) throws(IOError) -> Int {
        assertInLoop()
        let reg = SocketRegistration()
        let idx: Int
        if let i = registrationFree.popLast() {
            idx = i
            registrations[i] = reg
        } else {
            idx = registrations.count
            registrations.append(reg)
        }
        do {
            try addToEpoll(fd: fd, data: UInt64(idx),
                           events: EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue)
        } catch {
            registrations[idx] = nil
            registrationFree.append(idx)
            throw error
        }
        return idx
    }

    func unregister(fd: Int32, index: Int) {
        assertInLoop()
        var ev = epoll_event()
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev)
        if let reg = registrations[index] { reg.wakeAll() }
        registrations[index] = nil
        registrationFree.append(index)
    }
}

/// A TCP connection owned by one event loop. All calls must be made on that loop (from an actor
/// pinned to it, or a task that prefers it): it is not shared between threads.
public final class TCPConnection: @unchecked Sendable {
    // Touched only on `loop`'s thread (asserted); the class crosses threads only as a handle.
    public let loop: EventLoop
    public private(set) var fd: Int32
    private let index: Int
    public let peer: String
    public let local: String
    /// The last read returned less than it asked for: the socket had no more (see `read`).
    private var drained = false
    /// `read(2)` calls made, for the test that holds a drained socket to one call per arrival.
    public private(set) var readCalls = 0

    init(loop: EventLoop, fd: Int32) throws(IOError) {
        self.loop = loop
        self.fd = fd
        self.index = try loop.register(fd: fd)
        self.peer = socketAddress(fd, peer: true)
        self.local = socketAddress(fd, peer: false)
    }

    public var isOpen: Bool { fd >= 0 }

    /// Reads what is available, at most `count` bytes; waits if nothing is. Returns 0 at EOF.
    ///
    /// A read of a stream socket that returns less than it asked for took everything there was
    /// (epoll(7) says so), so the next read waits for a read event first instead of asking the
    /// kernel and hearing EAGAIN: one syscall fewer per arrival, which at queue depth 1 is one
    /// in every five or six a command costs. Events that came while nobody waited are remembered
    /// (`readable`), and so is a hang-up, so a wait never misses data or EOF.
    nonisolated(nonsending)
    public func read(into base: UnsafeMutableRawPointer, count: Int) async throws(IOError) -> Int {
        loop.assertInLoop()
        while true {
            guard fd >= 0, let reg = loop.registrations[index] else { throw IOError.closed }
            if drained && !reg.readable && !reg.hangup {
                await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.readWaiter = c }
                drained = false
                continue
            }
            // This read takes everything that arrived before any event seen so far.
            reg.readable = false
            readCalls &+= 1
            let n = Glibc.read(fd, base, count)
            if n >= 0 {
                drained = n > 0 && n < count
                return n
            }
            let e = errno
            if e == EINTR { continue }
            if e != EAGAIN && e != EWOULDBLOCK { throw IOError.errno(e, "read") }
            drained = false
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.readWaiter = c }
        }
    }

    /// Reads exactly `count` bytes; throws `.closed` on EOF before that.
    nonisolated(nonsending)
    public func readExactly(into base: UnsafeMutableRawPointer, count: Int) async throws(IOError) {
        var done = 0
        while done < count {
            let n = try await read(into: base + done, count: count - done)
            if n == 0 { throw IOError.closed }
            done += n
        }
    }

    /// Writes all of `count` bytes from `base`.
    nonisolated(nonsending)
    public func write(from base: UnsafeRawPointer, count: Int) async throws(IOError) {
        loop.assertInLoop()
        var done = 0
        while done < count {
            guard fd >= 0 else { throw IOError.closed }
            let n = send(fd, base + done, count - done, Int32(MSG_NOSIGNAL))
            if n >= 0 { done += n; continue }
            let e = errno
            if e == EINTR { continue }
            if e != EAGAIN && e != EWOULDBLOCK { throw IOError.errno(e, "send") }
            guard let reg = loop.registrations[index] else { throw IOError.closed }
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.writeWaiter = c }
        }
    }

    /// Writes several buffers with one `writev` where the socket takes them all.
    nonisolated(nonsending)
    public func write(_ parts: UnsafeMutableBufferPointer<iovec>) async throws(IOError) {
        loop.assertInLoop()
        var first = 0
        while first < parts.count {
            guard fd >= 0 else { throw IOError.closed }
            let n = writev(fd, parts.baseAddress! + first, Int32(parts.count - first))
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e != EAGAIN && e != EWOULDBLOCK { throw IOError.errno(e, "writev") }
                guard let reg = loop.registrations[index] else { throw IOError.closed }
                await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.writeWaiter = c }
                continue
            }
            var left = n
            while first < parts.count, left >= parts[first].iov_len {
                left -= parts[first].iov_len
                first += 1
            }
            if left > 0 {
                parts[first].iov_base = parts[first].iov_base! + left
                parts[first].iov_len -= left
            }
        }
    }

    /// Closes the socket; readers and writers parked on it wake and see `.closed`.
    public func close() {
        loop.assertInLoop()
        guard fd >= 0 else { return }
        loop.unregister(fd: fd, index: index)
        Glibc.close(fd)
        fd = -1
    }

    /// Shuts the socket down without closing the descriptor, waking a reader parked on it.
    public func shutdown() {
        guard fd >= 0 else { return }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }
}

/// A listening TCP socket on the loop.
public final class TCPListener: @unchecked Sendable {
    // Touched only on `loop`'s thread (asserted); the class crosses threads only as a handle.
    public let loop: EventLoop
    public private(set) var fd: Int32
    private var index: Int = -1
    public let port: UInt16
    public let host: String

    /// Binds `host:port` (port 0 picks one; see `port`). Must be called on the loop.
    public init(loop: EventLoop, host: String, port: UInt16, backlog: Int32 = 128) throws(IOError) {
        loop.assertInLoop()
        self.loop = loop
        self.host = host
        let (s, address) = try streamSocket(host: host, port: port, passive: true)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withPointer({ bind(s, $0, $1) }) == 0 else {
            let e = errno
            Glibc.close(s)
            throw IOError.errno(e, "bind \(host):\(port)")
        }
        guard listen(s, backlog) == 0 else {
            let e = errno
            Glibc.close(s)
            throw IOError.errno(e, "listen")
        }
        fd = s
        self.port = boundPort(s)
        index = try loop.register(fd: s)
    }

    /// Waits for the next connection. Throws `.closed` once the listener is closed.
    nonisolated(nonsending)
    public func accept() async throws(IOError) -> TCPConnection {
        loop.assertInLoop()
        while true {
            guard fd >= 0 else { throw IOError.closed }
            let c = ccairn_accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
            if c >= 0 {
                var one: Int32 = 1
                setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return try TCPConnection(loop: loop, fd: c)
            }
            let e = errno
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EMFILE || e == ENFILE {
                // Out of descriptors: back off instead of spinning on the readable listener.
                await loop.sleep(nanoseconds: 50_000_000)
                continue
            }
            if e != EAGAIN && e != EWOULDBLOCK { throw IOError.errno(e, "accept") }
            guard let reg = loop.registrations[index] else { throw IOError.closed }
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.readWaiter = c }
        }
    }

    public func close() {
        loop.assertInLoop()
        guard fd >= 0 else { return }
        loop.unregister(fd: fd, index: index)
        Glibc.close(fd)
        fd = -1
    }
}

/// Connects to `host:port` (a blocking connect, for tools and tests, then non-blocking on the loop).
public func tcpConnect(loop: EventLoop, host: String, port: UInt16) throws(IOError) -> TCPConnection {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &res)
    guard rc == 0, let ai = res else { throw IOError.errno(EINVAL, "getaddrinfo(\(host))") }
    defer { freeaddrinfo(res) }
    let s = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { throw IOError.errno(errno, "socket") }
    guard connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
        let e = errno
        Glibc.close(s)
        throw IOError.errno(e, "connect \(host):\(port)")
    }
    var one: Int32 = 1
    setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let flags = fcntl(s, F_GETFL)
    _ = fcntl(s, F_SETFL, flags | O_NONBLOCK)
    return try TCPConnection(loop: loop, fd: s)
}

func boundPort(_ fd: Int32) -> UInt16 {
    var ss = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    withUnsafeMutablePointer(to: &ss) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
    }
    if ss.ss_family == sa_family_t(AF_INET) {
        return withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
    }
    return withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
}

func socketAddress(_ fd: Int32, peer: Bool) -> String {
    var ss = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &ss) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &len) : getsockname(fd, $0, &len) }
    }
    guard rc == 0 else { return "?" }
    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
    var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
    let r = withUnsafePointer(to: &ss) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getnameinfo($0, len, &host, socklen_t(host.count), &serv, socklen_t(serv.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
    }
    guard r == 0 else { return "?" }
    let h = cStringValue(host)
    let s = cStringValue(serv)
    return h.contains(":") ? "[\(h)]:\(s)" : "\(h):\(s)"
}

func cStringValue(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

extension TCPConnection {
    /// Connects to `host:port` without blocking the loop: a non-blocking connect, then a wait of
    /// at most `timeoutNanos` for it to finish. Must be called on the loop.
    nonisolated(nonsending)
    public static func connect(loop: EventLoop, host: String, port: UInt16, timeoutNanos: UInt64) async throws(IOError) -> TCPConnection {
        loop.assertInLoop()
        let (s, address) = try streamSocket(host: host, port: port, passive: false)
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.withPointer({ Glibc.connect(s, $0, $1) }) != 0 {
            let e = errno
            guard e == EINPROGRESS || e == EINTR else {
                Glibc.close(s)
                throw IOError.errno(e, "connect \(host):\(port)")
            }
            // Connects are rare (start-up, reconnects): poll for completion instead of a timer race.
            let deadline = monotonicNanos() &+ timeoutNanos
            while true {
                var p = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 0) > 0 { break }
                if monotonicNanos() >= deadline {
                    Glibc.close(s)
                    throw IOError.errno(ETIMEDOUT, "connect \(host):\(port)")
                }
                await loop.sleep(nanoseconds: 2_000_000)
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                Glibc.close(s)
                throw IOError.errno(err, "connect \(host):\(port)")
            }
        }
        return try TCPConnection(loop: loop, fd: s)
    }
}

/// A resolved socket address, copied out of getaddrinfo's list.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    func withPointer<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }
}

/// Resolves numeric `host:port` (`passive`: for bind) and opens a non-blocking, close-on-exec
/// stream socket of its family: what a listener and an outgoing connection both start with.
func streamSocket(host: String, port: UInt16, passive: Bool) throws(IOError) -> (Int32, SocketAddress) {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_NUMERICSERV
    var res: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &res)
    guard rc == 0, let ai = res else { throw IOError.errno(EINVAL, "getaddrinfo(\(host)): \(String(cString: gai_strerror(rc)))") }
    defer { freeaddrinfo(res) }
    var address = SocketAddress()
    address.length = ai.pointee.ai_addrlen
    withUnsafeMutableBytes(of: &address.storage) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
    }
    let s = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { throw IOError.errno(errno, "socket") }
    return (s, address)
}
