import ArgumentParser
import CairnBackup
import CairnClient
import Foundation

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back volumes up to a directory or S3, incrementally; list, show, delete and restore backups (through the apiserver).",
        subcommands: [BackupCreateCommand.self, BackupListCommand.self, BackupGetCommand.self, BackupDeleteCommand.self,
                      BackupRestoreCommand.self]
    )
}

/// Where backups live, and how to reach an S3 one.
struct TargetOptions: ParsableArguments {
    @Option(help: "file:///DIR or s3://BUCKET/PREFIX.")
    var target: String

    @Option(help: "S3 endpoint, http(s)://HOST:PORT (default AWS's for the region; or AWS_ENDPOINT_URL).")
    var s3Endpoint: String?

    @Option(help: "S3 region (default us-east-1; or AWS_REGION).")
    var s3Region: String?

    @Option(help: "File of KEY=VALUE lines: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (default: those environment variables).")
    var s3CredentialsFile: String?

    func ref() throws -> TargetRef {
        let s = try TargetSpec(url: target, endpoint: s3Endpoint, region: s3Region)
            .withCredentials(file: s3CredentialsFile, environment: ProcessInfo.processInfo.environment)
        _ = try s.open()  // a bad URL, or S3 without credentials, stops here
        return TargetRef(url: s.url, endpoint: s.endpoint, region: s.region, accessKeyID: s.accessKeyID,
                         secretAccessKey: s.secretAccessKey)
    }

    /// `?target=...` and the credential headers, for the target-wide routes.
    func query() throws -> (String, [(String, String)]) {
        let r = try ref()
        var q = "target=" + escape(r.url)
        if let e = r.endpoint { q += "&endpoint=" + escape(e) }
        if let g = r.region { q += "&region=" + escape(g) }
        var h: [(String, String)] = []
        if let a = r.accessKeyID { h.append(("X-Cairn-Access-Key-Id", a)) }
        if let s = r.secretAccessKey { h.append(("X-Cairn-Secret-Access-Key", s)) }
        return (q, h)
    }

    private func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }
}

struct BackupCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Back a volume's snapshot up (default: a new snapshot); only what changed since the volume's last backup on the target is read and stored.")
    @Argument(help: "The volume.") var volume: String
    @Option(help: "The snapshot to back up (default: one taken now, backup-YYYYMMDD-HHMMSS).") var snapshot: String?
    @OptionGroup var target: TargetOptions
    @Flag(help: "Wait until it is done, showing progress.") var wait = false
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let body = BackupCreate(snapshot: snapshot, target: try target.ref())
        try await runClient(options) { client in
            var b: Backup = try await client.call("POST", "/v1/volumes/\(pathComponent(volume))/backups", body: body)
            var last = ""
            while wait && b.state == "running" {
                try await Task.sleep(nanoseconds: 500_000_000)
                let all: [Backup] = try await client.call("GET", "/v1/volumes/\(pathComponent(volume))/backups")
                b = all.first { $0.id == b.id } ?? b
                let line = String(format: "%@: %@, %@ of %@ read, %@ stored, %.1f MiB/s", b.id, b.state,
                                  Render.bytes(b.readBytes), Render.bytes(b.totalBytes), Render.bytes(b.uploadedBytes), b.mibPerSecond)
                if line != last { FileHandle.standardError.write(Data((line + "\n").utf8)); last = line }
            }
            try options.print(b, header: Backup.tableHeader) { [b.tableRow] }
            if b.state == "failed" { throw ClientError.unexpected(0, "backup \(b.id) failed: \(b.error ?? "?")") }
        }
    }
}

struct BackupListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the backups on a target, oldest first.")
    @OptionGroup var target: TargetOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (q, h) = try target.query()
        try await runClient(options) { client in
            let answer = try await client.send("GET", "/v1/backups?" + q, headers: h)
            try JSONHTTPClient.check(answer)
            let list = try JSONDecoder().decode([StoredBackup].self, from: answer.body)
            try options.print(list, header: StoredBackup.tableHeader) { list.map(\.tableRow) }
        }
    }
}

struct BackupGetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show one backup on a target.")
    @Argument(help: "The backup's id.") var id: String
    @OptionGroup var target: TargetOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (q, h) = try target.query()
        try await runClient(options) { client in
            let answer = try await client.send("GET", "/v1/backups/\(pathComponent(id))?" + q, headers: h)
            try JSONHTTPClient.check(answer)
            let b = try JSONDecoder().decode(StoredBackup.self, from: answer.body)
            try options.print(b, header: StoredBackup.tableHeader) { [b.tableRow] }
        }
    }
}

struct BackupDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a backup, and the blocks on its target no other backup needs.")
    @Argument(help: "The backup's id.") var id: String
    @OptionGroup var target: TargetOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (q, h) = try target.query()
        try await runClient(options) { client in
            let answer = try await client.send("DELETE", "/v1/backups/\(pathComponent(id))?" + q, timeoutSeconds: 600, headers: h)
            try JSONHTTPClient.check(answer)
            print("backup \(id) deleted")
        }
    }
}

struct BackupRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup to a new volume: every block is checked before the volume serves.")
    @Argument(help: "The backup's id.") var id: String
    @OptionGroup var target: TargetOptions
    @Option(help: "The new volume's name.") var to: String
    @Option(help: "Its size (default: the backup's).") var size: ByteSize?
    @Option(help: "Replicas, 1 to 5.") var replicas: Int = 3
    @Flag(help: "Wait until it is healthy, showing progress.") var wait = false
    @Option(help: "With --wait: give up after this many seconds.") var timeout: Double = 3600
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let ref = try target.ref()
        let (q, h) = try target.query()
        try await runClient(options) { client in
            var bytes = size?.bytes
            if bytes == nil {
                let answer = try await client.send("GET", "/v1/backups/\(pathComponent(id))?" + q, headers: h)
                try JSONHTTPClient.check(answer)
                bytes = try JSONDecoder().decode(StoredBackup.self, from: answer.body).size
            }
            let body = VolumeCreate(name: to, size: bytes!, replicas: replicas, fromBackup: id, backupTarget: ref)
            var v: Volume = try await client.call("POST", "/v1/volumes", body: body)
            if wait { v = try await waitHealthy(client, name: to, timeout: timeout) }
            try options.print(v, header: Volume.tableHeader) { [v.tableRow] }
        }
    }
}
