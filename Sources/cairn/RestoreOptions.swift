import ArgumentParser
import CairnBackup
import CairnVolume
import Foundation
import Logging

/// `cairn controller --restore-*`: a new volume whose first data is a backup, checked block by
/// block before the volume serves.
struct RestoreOptions: ParsableArguments {
    @Option(help: "The backup target: file:///DIR or s3://BUCKET/PREFIX.")
    var restoreFrom: String?

    @Option(help: "The backup's id.")
    var restoreBackup: String?

    @Option(help: "S3 endpoint, http(s)://HOST:PORT (default AWS's for the region).")
    var restoreEndpoint: String?

    @Option(help: "S3 region (default us-east-1).")
    var restoreRegion: String?

    @Option(help: "File of KEY=VALUE lines: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (default: those environment variables).")
    var restoreCredentialsFile: String?

    func validate(replicated: Bool) throws {
        guard (restoreFrom == nil) == (restoreBackup == nil) else {
            throw ValidationError("--restore-from and --restore-backup go together")
        }
        guard restoreFrom == nil || replicated else { throw ValidationError("a restore needs --replica") }
    }

    func populator(logger: Logger) throws -> (any VolumePopulator)? {
        guard let url = restoreFrom, let id = restoreBackup else { return nil }
        let spec = try TargetSpec(url: url, endpoint: restoreEndpoint, region: restoreRegion)
            .withCredentials(file: restoreCredentialsFile, environment: ProcessInfo.processInfo.environment)
        _ = try spec.open()  // a bad URL or missing credentials stop the start
        return BackupSource(spec: spec, backupID: id, logger: logger)
    }
}
