import Foundation
import Glibc
import Testing

/// moto's S3 server (PyPI `moto[server]`, in .venv) on 127.0.0.1, stopped by pid.
final class MotoServer {
    let process: Subprocess
    let endpoint: String
    let log: URL

    init(directory: URL) throws {
        let bin = Checkout.root.appendingPathComponent(".venv/bin/moto_server").path
        guard FileManager.default.isExecutableFile(atPath: bin) else {
            throw HarnessError("no moto_server in .venv: run `make test-venv` (scripts/venv.sh Tests/backup/requirements.txt)")
        }
        log = directory.appendingPathComponent("moto.log")
        // A port of its own range (the suites run in parallel); the next one if it is taken.
        var tries = 0
        while true {
            let port = 34000 + Int(getpid()) % 500 * 2 + tries
            let p = try Subprocess(path: bin, arguments: ["-H", "127.0.0.1", "-p", "\(port)"],
                                   environment: ProcessInfo.processInfo.environment, outputFile: log.path)
            let url = "http://127.0.0.1:\(port)"
            let deadline = Date().addingTimeInterval(30)
            var up = false
            while Date() < deadline, p.poll() == nil {
                if (try? HTTPClient.get(url + "/", timeout: 2)) != nil { up = true; break }
                usleep(100_000)
            }
            if up {
                process = p
                endpoint = url
                return
            }
            _ = p.terminate(grace: 2)
            tries += 1
            guard tries < 5 else { throw HarnessError("moto_server did not start:\n\((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
        }
    }

    func createBucket(_ name: String) throws {
        let r = try HTTPClient.request("PUT", endpoint + "/" + name)
        guard r.status == 200 else { throw HarnessError("create bucket \(name): \(r)") }
    }

    deinit { _ = process.terminate(grace: 5) }
}

/// SHA-256 of the whole volume at `url`, read through iSCSI (qemu-img convert, then sha256sum).
func volumeHash(_ url: String, scratch: URL) throws -> String {
    let out = scratch.appendingPathComponent("volume-\(UInt32.random(in: 0...UInt32.max)).raw")
    defer { try? FileManager.default.removeItem(at: out) }
    let c = try Tools.run("qemu-img", ["convert", "-f", "raw", "-O", "raw", url, out.path], timeout: 120)
    guard c.succeeded else { throw HarnessError("qemu-img convert \(url): \(c)") }
    let h = try Tools.run("sha256sum", [out.path], timeout: 60)
    guard h.succeeded, let hash = h.output.split(separator: " ").first else { throw HarnessError("sha256sum: \(h)") }
    return String(hash)
}

// Many processes at once (an apiserver, moto, six volumes): one of the exclusive suites.
extension ExclusiveSuites {
@Suite("Backups", .serialized)
struct BackupTests {
    @Test("backup to a directory and to S3 (moto), restore: the same SHA-256 as the snapshot; incremental uploads only what changed; a corrupt block fails the restore and is named; deleting one of two backups keeps what the other needs",
          .timeLimit(.minutes(6)))
    func backupAndRestore() throws {
        let api = try CairnAPIServer(pools: 3)
        defer { api.stop() }
        let moto = try MotoServer(directory: api.directory)
        try moto.createBucket("cairn-test")
        let dir = api.directory.appendingPathComponent("backups")
        let fileTarget = ["--target", "file://" + dir.path]
        let s3Target = ["--target", "s3://cairn-test/backups", "--s3-endpoint", moto.endpoint]
        let creds = api.directory.appendingPathComponent("s3-credentials")
        try "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n".write(to: creds, atomically: true, encoding: .utf8)
        let s3 = s3Target + ["--s3-credentials-file", creds.path]

        try #require(try api.cli(["volume", "create", "bk", "--size", "64MiB", "--wait"]).succeeded, "\(api.log)")
        let url = try #require(try api.status("bk")["url"] as? String)
        try qemuChecked(url, "write -P 0xa1 0 6M")
        try qemuChecked(url, "write -P 0xb2 20M 3M")
        try #require(try api.cli(["snapshot", "create", "bk", "s1"]).succeeded)
        let hash1 = try volumeHash(url, scratch: api.directory)

        func backup(_ args: [String]) throws -> [String: Any] {
            let r = try api.cli(["backup", "create", "bk"] + args + ["--wait", "-o", "json"])
            try #require(r.succeeded, "\(r)\n\(api.log)")
            let text = r.output
            let start = try #require(text.firstIndex(of: "{"))
            return try #require(try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: Any])
        }
        let b1 = try backup(["--snapshot", "s1"] + fileTarget)
        #expect(b1["state"] as? String == "done" && b1["previous"] == nil, "\(b1)")
        // Only the data is read: 9 MiB written, in 2 MiB blocks (holes skipped).
        #expect((b1["readBytes"] as? Int ?? 0) <= 10 << 20, "\(b1)")
        let b1s = try backup(["--snapshot", "s1"] + s3)
        #expect(b1s["state"] as? String == "done", "\(b1s)")

        // 10 MiB of new writes: the next backup reads and stores at most twice that, in blocks.
        try qemuChecked(url, "write -P 0xc3 8M 5M")
        try qemuChecked(url, "write -P 0xd4 \(40 * mib + 512 * 1024) 5M")
        try #require(try api.cli(["snapshot", "create", "bk", "s2"]).succeeded)
        let hash2 = try volumeHash(url, scratch: api.directory)
        #expect(hash2 != hash1)
        let b2 = try backup(["--snapshot", "s2"] + fileTarget)
        let bound = 2 * ((10 << 20) + (2 << 20) - 1) / (2 << 20) * (2 << 20)
        #expect(b2["previous"] as? String == b1["id"] as? String, "not incremental: \(b2)")
        #expect((b2["readBytes"] as? Int ?? .max) <= bound && (b2["newBlocks"] as? Int ?? .max) * (2 << 20) <= bound, "\(b2)")
        let listed = try #require(try api.cliJSON(["backup", "list"] + fileTarget) as? [[String: Any]])
        #expect(listed.compactMap { $0["id"] as? String } == [b1["id"] as? String, b2["id"] as? String].compactMap { $0 }, "\(listed)")
        #expect((try api.volume("bk")["backups"] as? [[String: Any]])?.count == 3)

        // Restores, each to a new volume of one replica: the snapshot's bytes exactly.
        func restore(_ id: Any?, _ to: String, _ target: [String]) throws -> String {
            let r = try api.cli(["backup", "restore", try #require(id as? String), "--to", to, "--replicas", "1", "--wait"] + target)
            try #require(r.succeeded, "\(r)\n\(api.log)")
            return try volumeHash(try #require(try api.status(to)["url"] as? String), scratch: api.directory)
        }
        #expect(try restore(b1["id"], "r1", fileTarget) == hash1)
        #expect(try restore(b1s["id"], "r1s", s3) == hash1)
        #expect(try restore(b2["id"], "r2", fileTarget) == hash2)
        let restored = try api.volume("r2")
        let populate = (restored["status"] as? [String: Any])?["populate"] as? [String: Any]
        #expect(populate?["kind"] as? String == "restore" && populate?["finished"] as? Bool == true, "\(restored)")

        // One of two deleted: the other still restores.
        #expect(try api.cli(["backup", "delete", try #require(b1["id"] as? String)] + fileTarget).succeeded)
        #expect(try restore(b2["id"], "r2b", fileTarget) == hash2)

        // A stored block corrupted: the restore fails naming it, and the volume never serves.
        let blocks = try #require(FileManager.default.subpaths(atPath: dir.appendingPathComponent("blocks").path)?
            .filter { $0.contains("/") }.sorted())
        let victim = dir.appendingPathComponent("blocks").appendingPathComponent(try #require(blocks.first))
        let original = try Data(contentsOf: victim)
        var bad = original
        bad[bad.count / 2] ^= 0xFF
        try bad.write(to: victim)
        let hash = victim.lastPathComponent
        let r = try api.cli(["backup", "restore", try #require(b2["id"] as? String), "--to", "r2c", "--replicas", "1"] + fileTarget)
        #expect(r.succeeded, "\(r)")
        try waitUntil(60, "the restore of r2c to fail naming the block", describe: { "\((try? api.volume("r2c")) ?? [:])" }) {
            let s = try api.volume("r2c")["status"] as? [String: Any]
            return (s?["message"] as? String)?.contains(hash) == true
        }
        let s = try #require(try api.volume("r2c")["status"] as? [String: Any])
        #expect(s["state"] as? String == "restoring", "\(s)")
        let read = try Tools.run("qemu-io", ["-f", "raw", "-c", "read 0 4k", try #require(s["url"] as? String)], timeout: 30)
        #expect(!read.succeeded || read.output.contains("failed"), "a half-restored volume served a read: \(read)")
    }
}
}  // extension ExclusiveSuites
