import ArgumentParser
import CairnClient
import Foundation

struct VolumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Create, list, inspect, grow and delete volumes (through the apiserver).",
        subcommands: [VolumeCreateCommand.self, VolumeListCommand.self, VolumeGetCommand.self, VolumeDeleteCommand.self,
                      VolumeExpandCommand.self, VolumeQoSCommand.self, VolumeStatsCommand.self]
    )
}

struct QoSFlags: ParsableArguments {
    @Option(help: "Most I/Os per second, reads and writes together.") var qosIops: UInt64?
    @Option(help: "Most reads per second.") var qosReadIops: UInt64?
    @Option(help: "Most writes per second.") var qosWriteIops: UInt64?
    @Option(help: "Most bytes per second, reads and writes together (e.g. 100MiB).") var qosBandwidth: ByteSize?
    @Option(help: "Most bytes read per second.") var qosReadBandwidth: ByteSize?
    @Option(help: "Most bytes written per second.") var qosWriteBandwidth: ByteSize?
    @Option(help: "Burst allowance in seconds at the limit (default 1).") var qosBurst: Double?

    var qos: QoS {
        QoS(iops: qosIops, readIops: qosReadIops, writeIops: qosWriteIops, bandwidth: qosBandwidth?.bytes,
            readBandwidth: qosReadBandwidth?.bytes, writeBandwidth: qosWriteBandwidth?.bytes, burstSeconds: qosBurst)
    }
}

struct VolumeCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a volume (the same spec again is not an error).")

    @Argument(help: "The volume's name (a DNS-1123 label).") var name: String
    @Option(help: "Size, e.g. 1GiB (a multiple of 4 KiB); a clone's default is its snapshot's.") var size: ByteSize?
    @Option(help: "Clone VOLUME/SNAPSHOT: the new volume's data is that snapshot, copied to its replicas before it serves (at the rebuild rate).")
    var fromSnapshot: String?
    @Option(help: "Replicas, 1 to 5, each on its own pool.") var replicas: Int = 3
    @Option(help: "RW replicas needed to acknowledge writes (default: a majority).") var minHealthy: Int?
    @Option(name: .customLong("pool-selector"), help: "Only pools with this label, KEY=VALUE (repeat).") var poolSelector: [String] = []
    @OptionGroup(title: "QoS") var qos: QoSFlags
    @Flag(help: "Wait until the volume is healthy, showing progress.") var wait = false
    @Option(help: "With --wait: give up after this many seconds.") var timeout: Double = 300
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            var bytes = size?.bytes
            if bytes == nil, let ref = fromSnapshot {
                // A clone is as large as its snapshot unless told otherwise.
                let parts = ref.split(separator: "/")
                guard parts.count == 2 else { throw ValidationError("--from-snapshot is VOLUME/SNAPSHOT") }
                let list: [Snapshot] = try await client.call("GET", "/v1/volumes/\(pathComponent(String(parts[0])))/snapshots")
                guard let s = list.first(where: { $0.name == parts[1] }) else {
                    throw ValidationError("volume \(parts[0]) has no snapshot \(parts[1])")
                }
                bytes = s.size
            }
            guard let bytes else { throw ValidationError("give --size (or --from-snapshot)") }
            let body = VolumeCreate(name: name, size: bytes, replicas: replicas, minHealthy: minHealthy,
                                    qos: qos.qos.isEmpty ? nil : qos.qos, poolSelector: try labelMap(poolSelector),
                                    fromSnapshot: fromSnapshot)
            var v: Volume = try await client.call("POST", "/v1/volumes", body: body)
            if wait { v = try await waitHealthy(client, name: name, timeout: timeout) }
            try options.print(v, header: Volume.tableHeader) { [v.tableRow] }
        }
    }
}

/// Polls a volume until it is healthy, printing each change of its progress on stderr.
func waitHealthy(_ client: JSONHTTPClient, name: String, timeout: Double) async throws -> Volume {
    let deadline = Date().addingTimeInterval(timeout)
    var last = ""
    while true {
        let v: Volume = try await client.call("GET", "/v1/volumes/\(pathComponent(name))")
        let rebuilding = v.status.replicas.compactMap { r in
            r.rebuild.flatMap { $0.finished ? nil : String(format: "%@ %.0f%%", r.id, $0.percent) }
        }
        let copying = v.status.populate.flatMap { $0.finished ? nil : String(format: ", %@ %.0f%%", $0.kind, $0.percent) } ?? ""
        let line = "\(name): \(v.status.state)\(copying), \(v.status.healthyReplicas)/\(v.status.replicas.count) replicas RW"
            + (rebuilding.isEmpty ? "" : ", rebuilding \(rebuilding.joined(separator: ", "))")
            + (v.status.message.map { " (\($0))" } ?? "")
        if line != last {
            FileHandle.standardError.write(Data((line + "\n").utf8))
            last = line
        }
        if v.status.state == "healthy" && v.status.replicas.allSatisfy({ $0.mode == "RW" && $0.role == "active" }) {
            return v
        }
        guard Date() < deadline else { throw ClientError.unexpected(0, "\(name) is not healthy after \(Int(timeout)) s: \(line)") }
        try await Task.sleep(nanoseconds: 250_000_000)
    }
}

struct VolumeListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the volumes.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let vs: [Volume] = try await client.call("GET", "/v1/volumes")
            try options.print(vs, header: Volume.tableHeader) { vs.map(\.tableRow) }
        }
    }
}

struct VolumeGetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show a volume, its replicas and status.")
    @Argument var name: String
    @Flag(help: "Wait until the volume is healthy, showing progress, then show it.") var wait = false
    @Option(help: "With --wait: give up after this many seconds.") var timeout: Double = 300
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let v: Volume = wait ? try await waitHealthy(client, name: name, timeout: timeout)
                : try await client.call("GET", "/v1/volumes/\(pathComponent(name))")
            if options.output.format == .table {
                print(Render.table(Volume.tableHeader, [v.tableRow]))
                print("")
                print(Render.table(Replica.tableHeader, v.status.replicas.map(\.tableRow)))
                if let m = v.status.message { print("\n\(m)") }
            } else {
                try options.print(v, header: []) { [] }
            }
        }
    }
}

struct VolumeDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a volume: stop its processes and remove its replicas' data.")
    @Argument var name: String
    @Option(help: "Give up waiting after this many seconds.") var timeout: Double = 120
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let path = "/v1/volumes/\(pathComponent(name))"
            let answer = try await client.send("DELETE", path, timeoutSeconds: 60)
            if let p = answer.problem { throw ClientError.problem(p) }
            // 202: still stopping; wait until it is gone.
            let deadline = Date().addingTimeInterval(timeout)
            while answer.status == 202 {
                let a = try await client.send("GET", path)
                if a.status == 404 { break }
                guard Date() < deadline else { throw ClientError.unexpected(202, "\(name) is still being deleted") }
                try await Task.sleep(nanoseconds: 250_000_000)
            }
            print("volume \(name) deleted")
        }
    }
}

struct VolumeExpandCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "expand", abstract: "Grow a volume online (initiators see the new size).")
    @Argument var name: String
    @Option(help: "The new, larger size, e.g. 2GiB.") var size: ByteSize
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let v: Volume = try await client.call("PATCH", "/v1/volumes/\(pathComponent(name))", body: VolumePatch(size: size.bytes))
            try options.print(v, header: Volume.tableHeader) { [v.tableRow] }
        }
    }
}

struct VolumeQoSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "qos", abstract: "Set a volume's QoS limits, live (the options given replace all limits).")
    @Argument var name: String
    @OptionGroup(title: "QoS") var qos: QoSFlags
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let v: Volume = try await client.call("PATCH", "/v1/volumes/\(pathComponent(name))", body: VolumePatch(qos: qos.qos))
            try options.print(v.qos, header: ["iops", "read iops", "write iops", "bandwidth", "read bw", "write bw", "burst"]) {
                let q = v.qos
                func n(_ x: UInt64?) -> String { x.map { "\($0)" } ?? "-" }
                func b(_ x: UInt64?) -> String { x.map { Render.bytes($0) + "/s" } ?? "-" }
                return [[n(q.iops), n(q.readIops), n(q.writeIops), b(q.bandwidth), b(q.readBandwidth), b(q.writeBandwidth),
                         "\(q.burstSeconds ?? 1)s"]]
            }
        }
    }
}

struct VolumeStatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "I/O figures of a volume since its controller started.")
    @Argument var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient(options) { client in
            let s: VolumeStats = try await client.call("GET", "/v1/volumes/\(pathComponent(name))/stats")
            try options.print(s, header: ["name", "reads", "writes", "read bytes", "written", "read lat", "write lat", "used", "size", "status", "uptime"]) {
                [[s.name, "\(s.readOps)", "\(s.writeOps)", Render.bytes(s.readBytes), Render.bytes(s.writeBytes),
                  String(format: "%.0f us", s.readLatencyMicros), String(format: "%.0f us", s.writeLatencyMicros),
                  Render.bytes(s.usedBytes), Render.bytes(s.size), s.status, String(format: "%.0fs", s.uptimeSeconds)]]
            }
        }
    }
}
