import ArgumentParser

@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Cairn: replicated block storage. One binary: the processes (controller, replica, apiserver) and the CLI over the apiserver.",
        subcommands: [ControllerCommand.self, ReplicaCommand.self, ApiserverCommand.self, VolumeCommand.self,
                      PoolCommand.self, SnapshotCommand.self, BackupCommand.self, EventsCommand.self, CSICommand.self, KubernetesCommand.self]
    )
}
