import ArgumentParser
import CairnClient
import Foundation

struct ReplicaListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a volume's replicas (or every volume's).")
    @Argument(help: "The volume (default: all).") var volume: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            var replicas: [Replica] = []
            if let volume {
                replicas = try await client.call("GET", "/v1/volumes/\(pathComponent(volume))/replicas")
            } else {
                let vs: [Volume] = try await client.call("GET", "/v1/volumes")
                replicas = vs.flatMap(\.status.replicas)
            }
            try options.print(replicas, header: Replica.tableHeader) { replicas.map(\.tableRow) }
        }
    }
}

struct ReplicaReplaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replace",
        abstract: "Replace a replica: a new one on another pool is added and rebuilt first, then this one goes.")
    @Argument var volume: String
    @Argument var id: String
    @Flag(help: "Wait until the replacement is done and the volume healthy.") var wait = false
    @Option(help: "With --wait: give up after this many seconds.") var timeout: Double = 1800
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let r: Replica = try await client.call("DELETE", "/v1/volumes/\(pathComponent(volume))/replicas/\(pathComponent(id))")
            if wait {
                let v = try await waitHealthy(client, name: volume, timeout: timeout)
                try options.print(v.status.replicas, header: Replica.tableHeader) { v.status.replicas.map(\.tableRow) }
            } else {
                try options.print(r, header: Replica.tableHeader) { [r.tableRow] }
            }
        }
    }
}
