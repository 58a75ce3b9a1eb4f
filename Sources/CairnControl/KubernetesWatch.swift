import Foundation

/// One event of a Kubernetes watch: the API server streams one JSON object per line,
/// `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}`.
struct KubeWatchEvent: Equatable {
    enum Kind: String { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK", error = "ERROR" }

    var kind: Kind
    /// The object's JSON (for ERROR, a Status).
    var object: Data
    var name: String?
    var resourceVersion: String?
    /// An ERROR's Status code: 410 (Gone) when the resource version is too old to watch from.
    var code: Int?

    /// Parses one line; nil for a line that is not an event (logged by the caller).
    static func parse(_ line: Data) -> KubeWatchEvent? {
        guard let json = try? JSONSerialization.jsonObject(with: line) as? [String: Any],
              let type = json["type"] as? String, let kind = Kind(rawValue: type),
              let object = json["object"] as? [String: Any],
              let data = try? JSONSerialization.data(withJSONObject: object) else { return nil }
        let metadata = object["metadata"] as? [String: Any]
        return KubeWatchEvent(kind: kind, object: data, name: metadata?["name"] as? String,
                              resourceVersion: metadata?["resourceVersion"] as? String, code: object["code"] as? Int)
    }
}

/// Cuts a byte stream into lines: the network delivers an event in pieces, or several in one.
struct KubeLineSplitter {
    private var pending: [UInt8] = []
    /// A line longer than this (a runaway stream) is an error rather than unbounded memory.
    static let maxLine = 16 << 20

    mutating func feed<Bytes: Sequence<UInt8>>(_ bytes: Bytes) throws -> [Data] {
        var lines: [Data] = []
        for b in bytes {
            if b == 0x0A {
                if !pending.isEmpty { lines.append(Data(pending)) }
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(b)
                if pending.count > Self.maxLine { throw KubernetesError(status: 0, message: "a watch event longer than \(Self.maxLine) bytes") }
            }
        }
        return lines
    }
}

/// The objects of one kind as a list and the watch after it describe them, by name: what an
/// informer keeps. Pure state, so every path (an event for an unknown object, a deletion, a
/// bookmark, a 410) is tested without an API server.
struct KubeObjectCache<Object: Sendable>: Sendable {
    enum Outcome: Equatable {
        case applied
        /// The watch cannot go on from here (410 Gone, or an error): list again.
        case relist
        /// An event that could not be read: skipped.
        case skipped
    }

    private(set) var objects: [String: Object] = [:]
    /// Where the next watch starts: the list's version, then each event's.
    private(set) var resourceVersion: String?
    /// Whether a list has filled the cache (until then it knows nothing, not "no objects").
    private(set) var synced = false
    let decode: @Sendable (Data) throws -> Object

    init(decode: @escaping @Sendable (Data) throws -> Object) {
        self.decode = decode
    }

    /// A list replaces everything: objects deleted while no watch ran are gone from it.
    mutating func replace(_ items: [(name: String, object: Object)], resourceVersion: String) {
        objects = Dictionary(items.map { ($0.name, $0.object) }, uniquingKeysWith: { _, b in b })
        self.resourceVersion = resourceVersion
        synced = true
    }

    mutating func apply(_ event: KubeWatchEvent) -> Outcome {
        switch event.kind {
        case .error:
            return .relist
        case .bookmark:
            if let v = event.resourceVersion { resourceVersion = v }
            return .applied
        case .added, .modified, .deleted:
            guard let name = event.name else { return .skipped }
            if event.kind == .deleted {
                objects[name] = nil
            } else {
                guard let o = try? decode(event.object) else { return .skipped }
                objects[name] = o
            }
            if let v = event.resourceVersion { resourceVersion = v }
            return .applied
        }
    }

    /// An object an apply just created: seen at once, before its watch event arrives. One the
    /// cache holds already is left as it is: its watch event may have come first and be newer
    /// (resource versions are opaque: they cannot be compared), and the apply's event follows.
    mutating func insertIfAbsent(_ name: String, _ object: Object) {
        if objects[name] == nil { objects[name] = object }
    }
}
