import ArgumentParser
import CairnClient
import Foundation

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Take, list, delete and revert to a volume's snapshots (through the apiserver).",
        subcommands: [SnapshotCreateCommand.self, SnapshotListCommand.self, SnapshotDeleteCommand.self,
                      SnapshotRevertCommand.self]
    )
}

struct SnapshotCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Take a crash-consistent snapshot of the whole volume, the same on every replica (writes pause a few ms).")
    @Argument(help: "The volume.") var volume: String
    @Argument(help: "The snapshot's name (default: snap-YYYYMMDD-HHMMSS, UTC).") var name: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        f.timeZone = TimeZone(identifier: "UTC")
        let snapshotName = name ?? "snap-" + f.string(from: Date())
        try await runClient(options) { client in
            let s: Snapshot = try await client.call("POST", "/v1/volumes/\(pathComponent(volume))/snapshots",
                                                    body: SnapshotRequest(name: snapshotName))
            try options.print(s, header: Snapshot.tableHeader) { [s.tableRow] }
        }
    }
}

struct SnapshotListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a volume's snapshots, oldest first.")
    @Argument(help: "The volume.") var volume: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let list: [Snapshot] = try await client.call("GET", "/v1/volumes/\(pathComponent(volume))/snapshots")
            try options.print(list, header: Snapshot.tableHeader) { list.map(\.tableRow) }
        }
    }
}

struct SnapshotDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a snapshot: its data is merged into the newer layers in the background, at the volume's rebuild rate.")
    @Argument(help: "The volume.") var volume: String
    @Argument(help: "The snapshot.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            try await client.call("DELETE", "/v1/volumes/\(pathComponent(volume))/snapshots/\(pathComponent(name))")
            print("snapshot \(name) of \(volume) deleted")
        }
    }
}

struct SnapshotRevertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert",
        abstract: "Make the volume read as the snapshot again (what was written since is dropped; other snapshots stay).",
        discussion: "Refused while an initiator is logged in to the volume: log out (unmount, detach) first.")
    @Argument(help: "The volume.") var volume: String
    @Argument(help: "The snapshot.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let v: Volume = try await client.call("POST",
                                                  "/v1/volumes/\(pathComponent(volume))/snapshots/\(pathComponent(name))/revert")
            try options.print(v, header: Volume.tableHeader) { [v.tableRow] }
        }
    }
}
