import GRPCCore
import SwiftProtobuf

/// CSI Identity: who the plugin is and what it serves. Probe is ready once the plugin can do
/// its work: the controller reaches the apiserver; a node has its tools.
struct IdentityService: Csi_V1_Identity.SimpleServiceProtocol {
    static let driverName = "cairn.csi.io"
    static let version = "0.1.0"

    let servesController: Bool
    let ready: @Sendable () async -> Bool

    func getPluginInfo(request: Csi_V1_GetPluginInfoRequest, context: ServerContext) async throws -> Csi_V1_GetPluginInfoResponse {
        .with {
            $0.name = Self.driverName
            $0.vendorVersion = Self.version
        }
    }

    func getPluginCapabilities(request: Csi_V1_GetPluginCapabilitiesRequest,
                               context: ServerContext) async throws -> Csi_V1_GetPluginCapabilitiesResponse {
        var caps: [Csi_V1_PluginCapability] = []
        if servesController {
            caps.append(.with { $0.service = .with { $0.type = .controllerService } })
        }
        caps.append(.with { $0.service = .with { $0.type = .volumeAccessibilityConstraints } })
        caps.append(.with { $0.volumeExpansion = .with { $0.type = .online } })
        return .with { $0.capabilities = caps }
    }

    func probe(request: Csi_V1_ProbeRequest, context: ServerContext) async throws -> Csi_V1_ProbeResponse {
        let ok = await ready()
        return .with { $0.ready = Google_Protobuf_BoolValue(ok) }
    }
}
