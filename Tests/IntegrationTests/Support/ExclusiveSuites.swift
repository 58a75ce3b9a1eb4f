// Suites that must not overlap: the QoS tests judge each second of fio's rate against a limit, and
// the control-plane tests start dozens of processes at once; run side by side on 2 CPUs, the
// second starved the first below its limit; the snapshot suite's 500 snapshots (fsyncs and
// merges) stalled a control-plane test's writer for 30 s. Nested here, under `.serialized`,
// they run one after the other (each still beside the other suites).

import Testing

@Suite("Exclusive: timing-sensitive and process-heavy suites", .serialized)
struct ExclusiveSuites {}
