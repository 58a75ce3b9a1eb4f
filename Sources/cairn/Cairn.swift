import ArgumentParser

@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Cairn: replicated block storage. One binary, one subcommand per process role.",
        subcommands: [ControllerCommand.self, ReplicaCommand.self]
    )
}
