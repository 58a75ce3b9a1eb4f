@testable import CairnReplica
import CairnIO
import Foundation
import Glibc
import Logging

/// A scratch replica directory and a running loop, both gone with the fixture.
final class ReplicaFixture {
    let directory: String
    let loop: EventLoop
    let logger = Logger(label: "test")

    init(_ name: String) throws {
        directory = "/tmp/cairn-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        loop = try EventLoop()
        loop.start()
    }

    deinit {
        loop.stopAndJoin()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
