import Glibc

/// A view of memory handed to the kernel or across tasks. The owner promises exclusive use
/// until the I/O that holds it completes; that promise is why it may be `@unchecked Sendable`.
public struct IOBuffer: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let count: Int

    public init(base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    public func slice(_ offset: Int, _ length: Int) -> IOBuffer {
        precondition(offset >= 0 && length >= 0 && offset + length <= count)
        return IOBuffer(base: base + offset, count: length)
    }

    public func zero() { memset(base, 0, count) }
}

/// Aligned buffers for O_DIRECT, in power-of-two size classes from 4 KiB to 16 MiB, recycled so the
/// data path allocates nothing per I/O once warm. Owned by one event loop: no lock.
public final class BufferPool: @unchecked Sendable {
    // Set once by EventLoop.init; used only on that loop's thread (asserted in debug).
    unowned(unsafe) var owner: EventLoop?
    public static let alignment = 4096
    static let minShift = 12
    static let maxShift = 24
    private var free: [[UnsafeMutableRawPointer]] = Array(repeating: [], count: maxShift - minShift + 1)
    private let keepPerClass = 64

    public init() {}

    public static func sizeClass(for length: Int) -> Int? {
        var shift = minShift
        while (1 << shift) < length { shift += 1 }
        return shift <= maxShift ? shift - minShift : nil
    }

    /// A buffer of at least `length` bytes (its `count` is exactly `length`).
    public func take(_ length: Int) -> IOBuffer {
        owner?.assertInLoop()
        let n = max(length, 1)
        guard let cls = BufferPool.sizeClass(for: n) else {
            return IOBuffer(base: UnsafeMutableRawPointer.allocate(byteCount: n, alignment: BufferPool.alignment), count: length)
        }
        if let p = free[cls].popLast() { return IOBuffer(base: p, count: length) }
        let size = 1 << (cls + BufferPool.minShift)
        return IOBuffer(base: UnsafeMutableRawPointer.allocate(byteCount: size, alignment: BufferPool.alignment), count: length)
    }

    public func give(_ buffer: IOBuffer) {
        owner?.assertInLoop()
        guard let cls = BufferPool.sizeClass(for: max(buffer.count, 1)), free[cls].count < keepPerClass else {
            buffer.base.deallocate()
            return
        }
        free[cls].append(buffer.base)
    }

    deinit {
        for list in free { for p in list { p.deallocate() } }
    }
}
