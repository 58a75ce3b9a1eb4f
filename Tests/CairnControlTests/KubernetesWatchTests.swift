// The watch protocol as the Kubernetes API server speaks it (a JSON event per line, bookmarks,
// 410 Gone) and the cache an informer keeps from it: every path without an API server.

@testable import CairnControl
import Foundation
import Testing

@Suite("Kubernetes watches")
struct KubernetesWatchTests {
    static func line(_ type: String, _ name: String, version: String, ready: Int? = nil) -> String {
        let status = ready.map { #","status":{"readyReplicas":\#($0)}"# } ?? ""
        return #"{"type":"\#(type)","object":{"kind":"Deployment","metadata":{"name":"\#(name)","resourceVersion":"\#(version)","labels":{"cairn.io/volume":"v"}}\#(status)}}"#
    }

    @Test("events split across chunks, or several in one chunk, come out whole and in order")
    func lineSplitting() throws {
        let stream = Self.line("ADDED", "a", version: "5") + "\n" + Self.line("MODIFIED", "a", version: "6") + "\n"
            + Self.line("DELETED", "a", version: "7") + "\n"
        let bytes = Array(stream.utf8)
        for cut in [1, 7, 64, 200, bytes.count] {
            var splitter = KubeLineSplitter()
            var events: [KubeWatchEvent] = []
            var i = 0
            while i < bytes.count {
                for l in try splitter.feed(bytes[i..<min(i + cut, bytes.count)]) { events.append(try #require(KubeWatchEvent.parse(l))) }
                i += cut
            }
            #expect(events.map(\.kind) == [.added, .modified, .deleted], "chunks of \(cut)")
            #expect(events.map(\.resourceVersion) == ["5", "6", "7"])
            #expect(events.allSatisfy { $0.name == "a" })
        }
    }

    @Test("a line that is not an event parses to nil; an ERROR carries its Status code")
    func parsing() throws {
        #expect(KubeWatchEvent.parse(Data("not json".utf8)) == nil)
        #expect(KubeWatchEvent.parse(Data(#"{"type":"SOMETHING","object":{}}"#.utf8)) == nil)
        let gone = try #require(KubeWatchEvent.parse(Data(#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}"#.utf8)))
        #expect(gone.kind == .error && gone.code == 410)
    }

    @Test("the cache: a list replaces all, events add, change and delete, bookmarks move the version, ERROR asks for a list")
    func cache() throws {
        var c = KubeObjectCache<KubeDeployment> { try JSONDecoder().decode(KubeDeployment.self, from: $0) }
        #expect(!c.synced)
        let old = try JSONDecoder().decode(KubeDeployment.self, from: Data(#"{"metadata":{"name":"gone"}}"#.utf8))
        c.insertIfAbsent("gone", old)
        c.replace([], resourceVersion: "10")
        #expect(c.synced && c.objects.isEmpty && c.resourceVersion == "10", "a list replaces what was there")
        func event(_ text: String) throws -> KubeWatchEvent { try #require(KubeWatchEvent.parse(Data(text.utf8))) }
        #expect(c.apply(try event(Self.line("ADDED", "a", version: "11"))) == .applied)
        #expect(c.apply(try event(Self.line("MODIFIED", "a", version: "12", ready: 1))) == .applied)
        #expect(c.objects["a"]?.status?.readyReplicas == 1)
        #expect(c.apply(try event(Self.line("ADDED", "b", version: "13"))) == .applied)
        #expect(c.apply(try event(Self.line("DELETED", "a", version: "14"))) == .applied)
        #expect(c.objects.keys.sorted() == ["b"] && c.resourceVersion == "14")
        #expect(c.apply(try event(#"{"type":"BOOKMARK","object":{"kind":"Deployment","metadata":{"resourceVersion":"20"}}}"#)) == .applied)
        #expect(c.resourceVersion == "20" && c.objects.keys.sorted() == ["b"])
        #expect(c.apply(try event(#"{"type":"MODIFIED","object":{"kind":"Deployment","metadata":{"name":"b","resourceVersion":"21"},"spec":7}}"#)) == .skipped,
                "an object that cannot be decoded is skipped")
        #expect(c.resourceVersion == "20")
        #expect(c.apply(try event(#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#)) == .relist)
        // What an apply returned goes in only when the cache has nothing of that name: a watch
        // event that came first may be newer.
        c.insertIfAbsent("b", old)
        #expect(c.objects["b"]?.metadata.name == "b", "the watched object stays")
        c.insertIfAbsent("c", old)
        #expect(c.objects["c"] != nil)
    }

    @Test("an apply body never escapes '/' (the API server reads it as YAML, and its parser refuses \"\\/\")")
    func applyBodies() throws {
        let body = try KubernetesAPI.applyBody(["apiVersion": "apps/v1", "metadata": ["labels": ["app.kubernetes.io/part-of": "cairn"]]])
        let text = String(decoding: body, as: UTF8.self)
        #expect(!text.contains("\\/") && text.contains("apps/v1") && text.contains("app.kubernetes.io/part-of"), "\(text)")
    }

    @Test("the orchestrator keys Deployments by their volume and role labels")
    func keys() throws {
        let d = try JSONDecoder().decode([KubeDeployment].self, from: Data(#"""
            [{"metadata":{"name":"c","labels":{"cairn.io/volume":"v","app.kubernetes.io/component":"controller"}}},
             {"metadata":{"name":"r","labels":{"cairn.io/volume":"v","app.kubernetes.io/component":"replica","cairn.io/replica":"r1"}}},
             {"metadata":{"name":"x","labels":{"cairn.io/volume":"v"}}}]
            """#.utf8))
        #expect(KubernetesOrchestrator.byKey(d).keys.sorted() == ["v/controller", "v/replica/r1"])
    }
}
