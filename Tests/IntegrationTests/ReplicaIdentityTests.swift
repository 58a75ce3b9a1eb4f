// A replica serves one volume, of one size, for life: its directory says which. These tests start
// real `cairn replica` processes over a directory that outlives them, and controllers that ask
// for something else.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Replica identity", .serialized)
struct ReplicaIdentityTests {
    /// What `start` threw: the harness puts the process's output in it.
    static func failure(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    @Test("a replica reopens its directory on restart, refuses another size, and needs --size only to create one",
          .timeLimit(.minutes(2)))
    func reopensAndRefusesAnotherSize() throws {
        let root = try Checkout.temporaryDirectory("cairn-ident")
        defer { try? FileManager.default.removeItem(at: root) }
        let r = try CairnReplicaProcess(directory: root.appendingPathComponent("r"), size: "64MiB")
        let id = r.replicaID
        #expect(!id.isEmpty)
        #expect(r.stop() == 0)

        let refused = Self.failure { try r.start(size: "32MiB") }
        #expect(refused?.contains("holds a replica of 67108864 bytes, not the 33554432 asked for") == true,
                "a restart with another size must refuse it: \(refused ?? "it started")")
        #expect(!r.isRunning)

        try r.start(size: nil)
        #expect(r.replicaID == id, "the same replica reopened: its id is kept")
        #expect(r.stop() == 0)

        let empty = root.appendingPathComponent("empty")
        let noSize = Self.failure { _ = try CairnReplicaProcess(directory: empty, size: nil) }
        #expect(noSize?.contains("holds no replica yet") == true,
                "a new directory without --size must be refused: \(noSize ?? "it started")")
    }

    @Test("a controller of another volume or size is refused by the replica, says why, and serves nothing from it",
          .timeLimit(.minutes(2)))
    func controllerOfAnotherVolumeIsRefused() throws {
        let v = try ReplicatedVolume(name: "identa", replicas: 1)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        #expect(v.controller?.stop(timeout: 10) == 0)
        v.controller = nil
        let port = v.replicas[0].port

        for (name, size, why) in [("identb", "64MiB", "another volume"), ("identa", "32MiB", "another size")] {
            let other = try CairnController(name: name, size: size, replicas: [port])
            defer { _ = other.stop(timeout: 10) }
            let deadline = Date().addingTimeInterval(10)
            while !other.logText.contains("replica refused the handshake: wrongVolume") && Date() < deadline {
                usleep(50_000)
            }
            #expect(other.logText.contains("replica refused the handshake: wrongVolume"),
                    "\(why): the controller should log the replica's refusal:\n\(other.logText)")
            if name == "identb" {
                // It keeps asking, less and less often: at 0, 0.5, 1.5 and 3.5 s in the next
                // four (at the fixed 0.5 s interval it would be eight or nine times). A slow
                // machine can only make it fewer.
                let refusal = "controller for volume identb refused"
                let before = v.replicas[0].logText.components(separatedBy: refusal).count - 1
                sleep(4)
                let tries = v.replicas[0].logText.components(separatedBy: refusal).count - 1 - before
                #expect((2...5).contains(tries), "\(tries) handshakes refused in 4 s")
            }
            #expect(!other.logText.contains("membership epoch"), "\(why): no membership may be persisted")
            #expect(v.replicas[0].isRunning)
        }
        #expect(v.replicas[0].logText.contains("this replica belongs to identa"))
        #expect(!v.replicas[0].logText.contains("closing connection"), "one line per refused handshake, the store's")
        #expect(v.replicas[0].logText.contains("wants 33554432 bytes; this replica holds 67108864"))
    }
}

@Suite("Replica wipe", .serialized)
struct ReplicaWipeTests {
    @Test("cairn replica wipe refuses another volume's replica, a running one and unknown files; removes a stopped one; twice is fine",
          .timeLimit(.minutes(2)))
    func wipe() throws {
        let v = try ReplicatedVolume(name: "wiped", replicas: 1, controllerArguments: ["--min-healthy", "1"])
        let c = try #require(v.controller)
        #expect(v.waitAllRW(timeout: 20), "\(v.log)")
        let dir = v.replicas[0].directory.path
        let bin = try CairnController.binary().path
        func wipe(_ extra: [String]) throws -> ToolResult { try Tools.run(bin, ["replica", "wipe", "--dir", dir] + extra) }

        let other = try wipe(["--volume", "another"])
        #expect(other.status != 0 && other.output.contains("holds a replica of volume wiped"), "\(other.output)")
        let running = try wipe(["--volume", "wiped"])
        #expect(running.status != 0 && running.output.contains("another process serves this directory"), "\(running.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/replica.json"))

        _ = c.stop(timeout: 10)
        #expect(v.replicas[0].stop() == 0)
        let done = try wipe(["--volume", "wiped"])
        #expect(done.status == 0, "\(done.output)")
        #expect(!FileManager.default.fileExists(atPath: dir))
        let again = try wipe(["--volume", "wiped"])
        #expect(again.status == 0 && again.output.contains("nothing to remove"), "\(again.output)")

        // Files that are not a replica's are never removed.
        let stranger = v.root.appendingPathComponent("not-a-replica")
        try FileManager.default.createDirectory(at: stranger, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: stranger.appendingPathComponent("notes.txt"))
        let refused = try Tools.run(bin, ["replica", "wipe", "--dir", stranger.path])
        #expect(refused.status != 0 && refused.output.contains("no replica.json"), "\(refused.output)")
        #expect(FileManager.default.fileExists(atPath: stranger.appendingPathComponent("notes.txt").path))
    }
}
