import Foundation
import Logging

/// Keeps the objects of one kind (under a label selector) current from the API server, as
/// client-go's informers do: a list, then one watch after another from the last version seen;
/// a 410 Gone (the version is too old) or a failure lists again, after a pause on failure.
/// Readers get the cache at once and never wait for the API server.
actor KubeInformer<Object: Sendable> {
    private var cache: KubeObjectCache<Object>
    private let api: KubernetesAPI
    private let path: String
    private let labelSelector: String
    private let logger: Logger
    private var task: Task<Void, Never>?
    /// Lists so far (the first fills the cache; later ones follow a 410 or a failure).
    private(set) var lists = 0

    init(api: KubernetesAPI, path: String, labelSelector: String, logger: Logger,
         decode: @escaping @Sendable (Data) throws -> Object) {
        self.api = api
        self.path = path
        self.labelSelector = labelSelector
        self.logger = logger
        cache = KubeObjectCache(decode: decode)
    }

    /// Starts following the API server (once; later calls do nothing).
    func start() {
        guard task == nil else { return }
        task = Task { await self.run() }
    }

    func stop() {
        task?.cancel()
        task = nil
    }

    /// The objects by name; nil until the first list arrived (not knowing is not "none").
    var objects: [String: Object]? { cache.synced ? cache.objects : nil }

    /// An object an apply created, seen before its watch event (see KubeObjectCache).
    func insertIfAbsent(_ name: String, _ object: Object) { cache.insertIfAbsent(name, object) }

    private func run() async {
        var needList = true
        var pause = Duration.seconds(1)
        while !Task.isCancelled {
            do {
                if needList {
                    let (items, version) = try await api.listVersioned(path, labelSelector: labelSelector)
                    cache.replace(items.compactMap { item in
                        guard let name = Self.name(item), let o = try? cache.decode(item) else { return nil }
                        return (name, o)
                    }, resourceVersion: version)
                    lists += 1
                    needList = false
                }
                try await api.watch(path, labelSelector: labelSelector, resourceVersion: cache.resourceVersion ?? "") { event in
                    await self.take(event)
                }
                needList = relistAsked
                relistAsked = false
                pause = .seconds(1)
            } catch let e as KubernetesError where e.status == 410 {
                needList = true  // the version is too old to watch from: list again, at once
            } catch {
                if Task.isCancelled { return }
                logger.warning("Kubernetes API, \(path): \(error); again in \(pause)")
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(30))
                needList = true
            }
        }
    }

    private var relistAsked = false

    /// One event from the watch; false ends the watch (to list again).
    private func take(_ event: KubeWatchEvent?) -> Bool {
        guard let event else {
            logger.warning("Kubernetes API, \(path): a watch line that is not an event, skipped")
            return true
        }
        switch cache.apply(event) {
        case .applied:
            return true
        case .skipped:
            logger.warning("Kubernetes API, \(path): a \(event.kind.rawValue) event for \(event.name ?? "?") that cannot be read, skipped")
            return true
        case .relist:
            if event.code != 410 {
                logger.warning("Kubernetes API, \(path): the watch ended with \(String(decoding: event.object.prefix(300), as: UTF8.self))")
            }
            relistAsked = true
            return false
        }
    }

    private struct Named: Decodable {
        struct Metadata: Decodable { var name: String }
        var metadata: Metadata
    }

    static func name(_ object: Data) -> String? {
        try? JSONDecoder().decode(Named.self, from: object).metadata.name
    }
}
