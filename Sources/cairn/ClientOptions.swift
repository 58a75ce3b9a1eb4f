import ArgumentParser
import CairnClient
import Foundation

/// How the CLI reaches the apiserver, and how it prints: shared by every client command.
struct ClientOptions: ParsableArguments {
    @Option(help: "The apiserver's URL (default: $CAIRN_SERVER, else http://127.0.0.1:9400).")
    var server: String?

    @Option(help: "File holding the API's bearer token (default: $CAIRN_TOKEN_FILE, or the token itself in $CAIRN_TOKEN).")
    var tokenFile: String?

    @Option(name: [.customShort("o"), .long], help: "Output: table, json or yaml.")
    var output: OutputFormatArgument = .init(format: .table)

    func client() throws -> JSONHTTPClient {
        let env = ProcessInfo.processInfo.environment
        let url = server ?? env["CAIRN_SERVER"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:9400"
        return JSONHTTPClient(baseURL: url, token: try Self.token(file: tokenFile))
    }

    /// The apiserver's bearer token: from `file`, else $CAIRN_TOKEN_FILE, else $CAIRN_TOKEN itself.
    static func token(file: String?) throws -> String? {
        let env = ProcessInfo.processInfo.environment
        if let path = file ?? env["CAIRN_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read the token file \(path)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return env["CAIRN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Prints `value` as JSON or YAML, or as the table `rows` makes.
    func print<T: Encodable>(_ value: T, header: [String], rows: () -> [[String]]) throws {
        switch output.format {
        case .table: Swift.print(Render.table(header, rows()))
        case .json: Swift.print(try Render.json(value))
        case .yaml: Swift.print(try Render.yaml(value))
        }
    }
}

struct OutputFormatArgument: ExpressibleByArgument, CustomStringConvertible {
    var format: OutputFormat

    init(format: OutputFormat) { self.format = format }

    init?(argument: String) {
        guard let f = OutputFormat(rawValue: argument) else { return nil }
        format = f
    }

    static var allValueStrings: [String] { OutputFormat.allCases.map(\.rawValue) }
    var description: String { format.rawValue }
    var defaultValueDescription: String { format.rawValue }
}

/// Runs a client command: its errors (the server's problem detail, an unreachable server) are
/// printed to stderr and end the process with status 1.
func runClient(_ options: ClientOptions, _ body: (JSONHTTPClient) async throws -> Void) async throws {
    let client = try options.client()
    do {
        try await body(client)
        await client.shutdown()
    } catch let e as ClientError {
        await client.shutdown()
        FileHandle.standardError.write(Data("Error: \(e)\n".utf8))
        throw ExitCode(1)
    } catch {
        await client.shutdown()
        throw error
    }
}

/// `k=v` pairs of repeated options into a map.
func labelMap(_ pairs: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for p in pairs {
        guard let eq = p.firstIndex(of: "="), eq != p.startIndex else { throw ValidationError("expected KEY=VALUE, got \(p)") }
        out[String(p[..<eq])] = String(p[p.index(after: eq)...])
    }
    return out
}

func pathComponent(_ s: String) -> String {
    s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
}
