import Foundation
@_implementationOnly import Hummingbird
@_implementationOnly import Prometheus

/// The apiserver's own `/metrics`: its requests (by route kind and status class) and their
/// latency, and on each scrape the counts of volumes by state, pools by state, processes running,
/// restarts, and the reconcile loop's passes.
final class APIServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let latency: DurationHistogram

    init() {
        latency = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_request_duration_seconds", unitName: "",
                                             helpText: "Time to answer an API request"),
            buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5), .seconds(30)])
    }

    func observe(method: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_requests_total", unitName: "", helpText: "API requests answered"), labels: [("method", method), ("code", "\(status / 100)xx")]).increment()
        latency.record(duration)
    }

    func render(store: StateStore, reconciler: Reconciler) async -> String {
        let (states, running, restarts) = await reconciler.summary()
        for state in ["pending", "healthy", "degraded", "read-only", "offline", "unreachable"] {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_volumes", unitName: "", helpText: "Volumes by the state their controller reports"), labels: [("state", state)]).set(Double(states[state] ?? 0))
        }
        let pools = (try? store.pools()) ?? []
        for state in ["ready", "cordoned", "draining"] {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_pools", unitName: "", helpText: "Pools by state"), labels: [("state", state)])
                .set(Double(pools.filter { $0.state == state }.count))
        }
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_processes_running", unitName: "", helpText: "Volume processes running")).set(Double(running))
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_process_restarts", unitName: "", helpText: "Restarts of the volumes' processes, added up")).set(Double(restarts))
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_reconcile_passes", unitName: "", helpText: "Passes of the reconcile loop"))
            .set(Double(await reconciler.passes))
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "cairn_apiserver_reconcile_last_pass_seconds", unitName: "", helpText: "How long the last pass took"))
            .set(await reconciler.lastPassSeconds)
        var out: [UInt8] = []
        registry.emit(into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Counts and times every request for `APIServerMetrics`.
struct RequestCounter: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: APIServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let r = try await next(request, context)
            metrics.observe(method: request.method.rawValue, status: r.status.code, duration: ContinuousClock.now - start)
            return r
        } catch let e as HTTPError {
            metrics.observe(method: request.method.rawValue, status: e.status.code, duration: ContinuousClock.now - start)
            // Hummingbird's own errors (an unknown route, a method not allowed) as problem documents.
            return Answer.problem(e.status, e.status == .notFound ? "not-found" : "http-error",
                                  e.body ?? e.status.reasonPhrase)
        }
    }
}
