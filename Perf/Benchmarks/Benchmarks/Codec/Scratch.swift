/// Memory for one benchmark's inputs and outputs, allocated in its setup (outside the measured
/// region) and never freed: each benchmark runs in a process of its own.
final class Scratch {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(_ count: Int) {
        self.count = count
        base = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 4096)
        for i in 0..<count { base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 131 &+ 7), toByteOffset: i, as: UInt8.self) }
    }
}
