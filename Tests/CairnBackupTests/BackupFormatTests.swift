@testable import CairnBackup
import Foundation
import Testing

@Suite struct BackupFormatTests {
    static func scratch(_ name: String) -> String {
        "/tmp/cairn-backup-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// AWS's own example (S3 API reference, "GET Bucket Lifecycle"): the same signature.
    @Test func sigV4MatchesAWSExample() {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let headers = SigV4.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/", query: [("lifecycle", "")],
                                 payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                 region: "us-east-1",
                                 credentials: .init(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                                    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                                 date: f.date(from: "20130524T000000Z")!)
        let auth = headers.first { $0.0 == "Authorization" }?.1 ?? ""
        #expect(auth == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                + "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func blocksAreStoredOnceCheckedOnReadAndCollectedWhenNoBackupNamesThem() async throws {
        let dir = Self.scratch("repo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = BackupRepository(target: try TargetSpec(url: "file://" + dir).open())
        let a = Data(repeating: 0xA1, count: 1 << 20), b = Data((0..<(1 << 20)).map { UInt8($0 % 251) })
        let ha = a.withUnsafeBytes { BackupRepository.hash($0) }, hb = b.withUnsafeBytes { BackupRepository.hash($0) }
        #expect(try await repo.putBlock(ha, a) > 0)
        #expect(try await repo.putBlock(ha, a) == 0)  // there already
        _ = try await repo.putBlock(hb, b)
        func manifest(_ id: String, _ blocks: [String?]) -> Manifest {
            Manifest(id: id, volume: "v", snapshot: "s", snapshotID: "i", createdAt: "2026-12-0\(id.last!)T00:00:00Z",
                     size: UInt64(blocks.count) << 21, blockSize: 2 << 20, blocks: blocks, previous: nil, stats: .init())
        }
        try await repo.putManifest(manifest("b1", [ha, nil, hb]))
        try await repo.putManifest(manifest("b2", [ha]))
        #expect(try await repo.manifests().map(\.id) == ["b1", "b2"])
        #expect(try await repo.block(hb, length: 1 << 20, index: 2) == b)

        // b1 goes: hb is no longer named, ha is (by b2).
        #expect(try await repo.delete("b1") == 1)
        #expect(try await repo.target.exists(BackupRepository.blockKey(ha)))
        #expect(!(try await repo.target.exists(BackupRepository.blockKey(hb))))
        await #expect(throws: BackupError.self) { _ = try await repo.manifest("b1") }

        // A corrupt block is named on read.
        try await repo.target.put(BackupRepository.blockKey(ha), try b.withUnsafeBytes { try Zstd.compress($0) })
        do {
            _ = try await repo.block(ha, length: 1 << 20, index: 0)
            Issue.record("a corrupt block was read")
        } catch {
            #expect("\(error)".contains("block 0 (\(ha))") && "\(error)".contains("corrupt"), "\(error)")
        }
    }

    @Test func aRunningBackupsBlocksAreNotCollected() async throws {
        let dir = Self.scratch("pending")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = BackupRepository(target: try TargetSpec(url: "file://" + dir).open())
        try await repo.putManifest(Manifest(id: "old", volume: "v", snapshot: "s", snapshotID: "i", createdAt: "x", size: 0,
                                            blockSize: 2 << 20, blocks: [], previous: nil, stats: .init()))
        try await repo.begin("running")
        let c = Data(repeating: 7, count: 4096)
        let hc = c.withUnsafeBytes { BackupRepository.hash($0) }
        _ = try await repo.putBlock(hc, c)
        #expect(try await repo.delete("old") == 0)
        #expect(try await repo.target.exists(BackupRepository.blockKey(hc)))
        await repo.end("running")
    }

    @Test func targetsAreParsedAndBadOnesRefused() throws {
        #expect(throws: BackupError.self) { _ = try TargetSpec(url: "file://relative").open() }
        #expect(throws: BackupError.self) { _ = try TargetSpec(url: "s3://bucket/p").open() }  // no credentials
        #expect(throws: BackupError.self) { _ = try TargetSpec(url: "ftp://x").open() }
        let s3 = try TargetSpec(url: "s3://bucket/some/prefix", endpoint: "http://127.0.0.1:9", accessKeyID: "a", secretAccessKey: "b").open()
        #expect(s3.description.contains("s3://bucket/some/prefix/"))
        let spec = try TargetSpec(url: "s3://b").withCredentials(file: nil, environment: ["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"])
        #expect(spec.accessKeyID == "k" && spec.secretAccessKey == "s" && spec.redacted.secretAccessKey == nil)
    }
}
