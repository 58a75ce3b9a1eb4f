import CairnIO
// Implementation-only, like Hummingbird (see HTTPServer.swift).
@_implementationOnly import Prometheus
import Synchronization

/// The event loop's idle-polling series, in the controller's and the replica's `/metrics`: they
/// tell whether polling pays on a node (idle periods ended by an event found while polling: a
/// sleep and a wake-up saved) or whether contention for the CPU keeps switching it off.
final class LoopMetrics: Sendable {
    private let polledHits: Counter, slept: Counter, contended: Counter
    private let window: Gauge
    private let last = Mutex(LoopIdleStats())

    init(registry r: PrometheusCollectorRegistry) {
        let periods = "Idle periods of the event loop, by how they ended: an event found while polling, or a sleep"
        polledHits = r.counter(name: "cairn_loop_idle_periods_total", labels: [("ended", "poll")], help: periods)
        slept = r.counter(name: "cairn_loop_idle_periods_total", labels: [("ended", "sleep")], help: periods)
        contended = r.counter(name: "cairn_loop_idle_poll_yields_total",
                              help: "Polls that handed the CPU to another thread (each turns polling off for a while)")
        window = r.gauge(name: "cairn_loop_idle_poll_window_seconds",
                         help: "How long the event loop polls before it sleeps, now (0: not polling; --idle-poll is the most)")
    }

    func update(_ s: LoopIdleStats) {
        last.withLock { l in
            advance(polledHits, &l.polledHits, s.polledHits)
            advance(slept, &l.slept, s.slept)
            advance(contended, &l.contended, s.contended)
        }
        window.set(to: Double(s.windowNanos) / 1e9)
    }
}

/// Adds to `counter` what `now` grew by since `last` (never less than zero): the exported counters
/// follow the process's own, and concurrent scrapes that see them out of order cannot count twice.
func advance(_ counter: Counter, _ last: inout UInt64, _ now: UInt64) {
    guard now > last else { return }
    counter.increment(by: Int64(clamping: now - last))
    last = now
}

/// The same for a counter of seconds fed from nanoseconds.
func advanceSeconds(_ counter: Counter, _ lastNanos: inout UInt64, _ nowNanos: UInt64) {
    guard nowNanos > lastNanos else { return }
    counter.increment(by: Double(nowNanos - lastNanos) / 1e9)
    lastNanos = nowNanos
}
