import CairnClient
import Foundation
import Logging
import Synchronization

/// The event log: each event a row of the state store (so `GET /v1/events` survives restarts),
/// and handed to every follower (`?follow=1`) as it is written.
final class EventLog: Sendable {
    private let store: StateStore
    private let logger: Logger
    private let followers = Mutex<[UInt64: AsyncStream<Event>.Continuation]>([:])
    private let nextFollower = Atomic<UInt64>(0)

    init(store: StateStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(_ type: String, volume: String? = nil, replica: String? = nil, _ message: String) {
        logger.info("event \(type): \(message)", metadata: volume.map { ["volume": "\($0)"] } ?? [:])
        do {
            let e = try store.record(type, volume: volume, replica: replica, message)
            followers.withLock { for c in $0.values { c.yield(e) } }
        } catch {
            logger.error("could not record event \(type): \(error)")
        }
    }

    /// Events after `id` (oldest first), at most `limit`.
    func events(after id: Int64, limit: Int) throws -> [Event] {
        try store.events(after: id, limit: limit).map(\.event)
    }

    /// A stream of every event recorded from now on; ends when the consumer stops iterating.
    func follow() -> AsyncStream<Event> {
        let id = nextFollower.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        continuation.onTermination = { [weak self] _ in
            _ = self?.followers.withLock { $0.removeValue(forKey: id) }
        }
        followers.withLock { $0[id] = continuation }
        return stream
    }

    /// Ends every follower's stream (the apiserver is stopping).
    func finishFollowers() {
        let all = followers.withLock { f in
            defer { f.removeAll() }
            return Array(f.values)
        }
        all.forEach { $0.finish() }
    }
}
