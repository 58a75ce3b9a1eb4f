import ArgumentParser
import CairnClient
import Foundation

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Directories where replicas keep their data: add, list, cordon, uncordon, drain, remove.",
        subcommands: [PoolAddCommand.self, PoolListCommand.self, PoolStateCommand<Cordon>.self,
                      PoolStateCommand<Uncordon>.self, PoolDrainCommand.self, PoolRemoveCommand.self]
    )
}

struct PoolAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a pool: an existing directory.")
    @Argument(help: "The pool's name (a DNS-1123 label).") var name: String
    @Option(help: "Its directory (absolute; it must exist).") var path: String
    @Option(name: .customLong("label"), help: "A label, KEY=VALUE (repeat).") var labels: [String] = []
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let body = PoolCreate(name: name, path: absolute, labels: try labelMap(labels))
        try await runClient(options) { client in
            let p: Pool = try await client.call("POST", "/v1/pools", body: body)
            try options.print(p, header: Pool.tableHeader) { [p.tableRow] }
        }
    }
}

struct PoolListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the pools with their capacity.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let ps: [Pool] = try await client.call("GET", "/v1/pools")
            try options.print(ps, header: Pool.tableHeader) { ps.map(\.tableRow) }
        }
    }
}

protocol PoolStateChange {
    static var name: String { get }
    static var abstract: String { get }
    static var state: PoolState { get }
}

enum Cordon: PoolStateChange {
    static let name = "cordon"
    static let abstract = "Place no new replica on a pool (those on it stay)."
    static let state = PoolState.cordoned
}

enum Uncordon: PoolStateChange {
    static let name = "uncordon"
    static let abstract = "Let a pool take new replicas again."
    static let state = PoolState.ready
}

struct PoolStateCommand<Change: PoolStateChange>: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: Change.name, abstract: Change.abstract)
    }

    @Argument var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let p: Pool = try await client.call("PATCH", "/v1/pools/\(pathComponent(name))", body: PoolPatch(state: Change.state))
            try options.print(p, header: Pool.tableHeader) { [p.tableRow] }
        }
    }
}

struct PoolDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Move every replica off a pool: each is replaced on another pool and rebuilt, then removed.")
    @Argument var name: String
    @Flag(help: "Wait until the pool holds no replica, showing progress.") var wait = false
    @Option(help: "With --wait: give up after this many seconds.") var timeout: Double = 1800
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let path = "/v1/pools/\(pathComponent(name))"
            var p: Pool = try await client.call("PATCH", path, body: PoolPatch(state: .draining))
            let deadline = Date().addingTimeInterval(timeout)
            var last = -1
            while wait && p.replicaCount > 0 {
                if p.replicaCount != last {
                    FileHandle.standardError.write(Data("\(name): \(p.replicaCount) replica(s) left\n".utf8))
                    last = p.replicaCount
                }
                guard Date() < deadline else { throw ClientError.unexpected(0, "\(name) still holds \(p.replicaCount) replica(s)") }
                try await Task.sleep(nanoseconds: 500_000_000)
                p = try await client.call("GET", path)
            }
            try options.print(p, header: Pool.tableHeader) { [p.tableRow] }
        }
    }
}

struct PoolRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Forget a pool that holds no replica.")
    @Argument var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            try await client.call("DELETE", "/v1/pools/\(pathComponent(name))")
            print("pool \(name) removed")
        }
    }
}
