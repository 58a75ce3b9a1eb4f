import ArgumentParser
import CairnClient
import Foundation

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "What happened: volumes created, replicas ejected, rebuilds, restarts, replacements.")
    @Flag(help: "Keep printing new events as they happen.") var follow = false
    @Option(help: "Only this volume's events.") var volume: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let format = options.output.format
        let only = volume
        try await runClient(options) { client in
            @Sendable func show(_ e: Event) throws {
                if let only, e.volume != only { return }
                switch format {
                case .table: print(e.line)
                case .json: print(String(decoding: try WireJSON.encoder().encode(e), as: UTF8.self))
                case .yaml: print("---\n" + (try Render.yaml(e)))
                }
                fflush(nil)
            }
            if follow {
                try await client.streamLines("/v1/events?follow=1") { line in
                    try show(try JSONDecoder().decode(Event.self, from: Data(line.utf8)))
                }
            } else {
                let es: [Event] = try await client.call("GET", "/v1/events")
                for e in es { try show(e) }
            }
        }
    }
}
