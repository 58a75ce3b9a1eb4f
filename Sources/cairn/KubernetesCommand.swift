import ArgumentParser
import CairnClient
import CairnControl

struct KubernetesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubernetes",
        abstract: "What Cairn makes on Kubernetes, without a cluster.",
        subcommands: [KubernetesObjectsCommand.self]
    )
}

struct KubernetesObjectsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "objects",
        abstract: "Print the objects the Kubernetes orchestrator applies for a volume: its Secret, each replica's Deployment and Service, the controller's Deployment and Service.",
        discussion: "Replica ids, the volume's secret and the owner's uid are placeholders; the orchestrator makes real ones."
    )

    @Option(help: "The volume's name.")
    var volume: String

    @Option(help: "Its size, e.g. 10GiB.")
    var size: ByteSize

    @Option(help: "Replicas, one per pool.")
    var replicas: Int = 3

    @Option(help: "RW replicas needed to acknowledge a write (default: a majority).")
    var minHealthy: Int?

    @Option(name: .customLong("pool"), help: "A pool: NAME=NODE:PATH (repeat; replicas go on the first ones).")
    var pools: [String] = []

    @Option(help: "The namespace Cairn runs in.")
    var namespace: String = "cairn-system"

    @Option(help: "The image of the volumes' pods.")
    var image: String = "ghcr.io/cairn-storage/cairn:v0.1.0"

    @Flag(help: "Also the Jobs that remove the replicas' directories on their nodes once the volume is deleted.")
    var wipeJobs = false

    @Option(name: [.customShort("o"), .long], help: "Output: yaml or json.")
    var output: String = "yaml"

    func run() throws {
        let parsed = try pools.map { text -> KubernetesRender.Pool in
            let nameRest = text.split(separator: "=", maxSplits: 1)
            let nodePath = nameRest.count == 2 ? nameRest[1].split(separator: ":", maxSplits: 1) : []
            guard nodePath.count == 2, nodePath[1].hasPrefix("/") else { throw ValidationError("--pool \(text): expected NAME=NODE:/PATH") }
            return .init(name: String(nameRest[0]), node: String(nodePath[0]), path: String(nodePath[1]))
        }
        let list = try KubernetesRender.volume(name: volume, size: size.bytes, replicas: replicas, minHealthy: minHealthy,
                                               pools: parsed, namespace: namespace, image: image, wipeJobs: wipeJobs)
        switch output {
        case "json": print(try Render.json(list))
        case "yaml": print(try Render.yaml(list))
        default: throw ValidationError("-o must be yaml or json")
        }
    }
}
