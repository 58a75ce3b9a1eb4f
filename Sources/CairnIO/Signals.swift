import CCairn
import Glibc

extension EventLoop {
    /// Waits on the loop until one of `signals` arrives and returns it. The process's handlers
    /// for them are replaced by a self-pipe that sits in this loop's epoll set.
    nonisolated(nonsending)
    public func waitForSignal(_ signals: [Int32]) async throws(IOError) -> Int32 {
        assertInLoop()
        let fd = signals.withUnsafeBufferPointer { ccairn_signal_pipe($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw IOError.errno(errno, "signal pipe") }
        let index = try register(fd: fd)
        defer {
            var ev = epoll_event()
            epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev)
            registrations[index] = nil
            registrationFree.append(index)
        }
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n == 1 { return Int32(byte) }
            guard let reg = registrations[index] else { throw IOError.closed }
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in reg.readWaiter = c }
        }
    }
}
