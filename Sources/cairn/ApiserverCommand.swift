import ArgumentParser
import Foundation
import CairnControl
import Logging

struct ApiserverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apiserver",
        abstract: "Keep the desired state of pools and volumes, and run every volume's controller and replicas.",
        discussion: """
            The state is in DATA/state.db (SQLite). Each volume's processes are children of the apiserver in
            sessions of their own, logging to DATA/volumes/NAME/; they keep serving when the apiserver stops
            or dies, and the next apiserver adopts them. The REST API under /v1 needs the bearer token in
            DATA/token (made on first start) or --token-file; /healthz, /readyz, /metrics and /openapi.json
            do not.
            """
    )

    @Option(help: "Directory of the state, the token, and the volumes' secrets and logs (created if missing).")
    var data: String

    @Option(help: "HOST:PORT the REST API listens on (port 0 picks one).")
    var listen: HostPort = HostPort(argument: "127.0.0.1:9400")!

    @Option(help: "File holding the bearer token (default: DATA/token, made on first start).")
    var tokenFile: String?

    @Option(help: "Address the volumes' iSCSI portals listen on and their URLs name.")
    var portalHost: String = "127.0.0.1"

    @Option(help: "Address the replicas listen on for their controllers.")
    var replicaHost: String = "127.0.0.1"

    @Option(help: "Ports for portals, controller APIs and replicas, FIRST-LAST.")
    var ports: String = "20000-29999"

    @Option(help: "Pools must be directories under this one (an API client cannot then place data elsewhere).")
    var poolRoot: String?

    @Flag(help: "Stop every volume's processes when the apiserver stops (as `make run` does). By default they keep serving.")
    var stopVolumesOnExit = false

    @Option(help: "How often a healthy volume's controller is asked for its status (seconds).")
    var pollInterval: Double = 2

    @Option(help: "Where the volumes' processes run: local (children of this process) or kubernetes (Deployments, through the Kubernetes API).")
    var orchestrator: String = "local"

    @Option(help: "With --orchestrator kubernetes: the namespace of the volumes' objects (default: this pod's, else cairn-system).")
    var namespace: String?

    @Option(help: "With --orchestrator kubernetes: the volumes' pods' image (default: this pod's own).")
    var image: String?

    @Option(help: "With --orchestrator kubernetes, outside a pod: the Kubernetes API's URL (with --kubernetes-token-file, --kubernetes-ca-file).")
    var kubernetesAPI: String?

    @Option(help: "The Kubernetes API's bearer token file (default: the pod's service account's).")
    var kubernetesTokenFile: String?

    @Option(help: "The Kubernetes API's CA certificate file (default: the pod's service account's).")
    var kubernetesCaFile: String?

    @Option(help: "Log level of the apiserver: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Log level given to the volumes' processes.")
    var processLogLevel: String = "info"

    var portRange: ClosedRange<Int>? {
        let parts = ports.split(separator: "-")
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), 1 <= a, a <= b, b <= 65535 else { return nil }
        return a...b
    }

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard Logger.Level(rawValue: processLogLevel) != nil else { throw ValidationError("unknown --process-log-level") }
        guard let r = portRange, r.count >= 8 else { throw ValidationError("--ports must be FIRST-LAST, at least 8 ports") }
        guard pollInterval >= 0.1 && pollInterval <= 60 else { throw ValidationError("--poll-interval must be 0.1 to 60") }
        guard ["local", "kubernetes"].contains(orchestrator) else { throw ValidationError("--orchestrator must be local or kubernetes") }
    }

    func run() async throws {
        _ = bootstrapLogging(logLevel)
        let logger = Logger(label: "cairn.apiserver")
        let data = data.hasPrefix("/") ? data : FileManager.default.currentDirectoryPath + "/" + data
        var network = ControlConfig.Network.local
        if orchestrator == "kubernetes" {
            let podNamespace = try? String(contentsOfFile: "/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding: .utf8)
            network = .kubernetes(namespace: namespace ?? podNamespace?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "cairn-system")
        }
        let control = ControlConfig(dataDir: data, portalHost: portalHost, replicaHost: replicaHost, ports: portRange!,
                                    poolRoot: poolRoot, processLogLevel: processLogLevel, pollSeconds: pollInterval, network: network)
        let kubernetes = APIServer.KubernetesOptions(image: image, apiURL: kubernetesAPI, tokenFile: kubernetesTokenFile,
                                                     caFile: kubernetesCaFile)
        do {
            try await APIServer.run(.init(control: control, host: listen.host, port: Int(listen.port), tokenFile: tokenFile,
                                          stopVolumesOnExit: stopVolumesOnExit, kubernetes: kubernetes), logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
    }
}
