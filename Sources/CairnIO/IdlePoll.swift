/// How long an idle loop keeps polling for events before it sleeps in `epoll_wait`, adapted to
/// the gaps it sees (the rule of Linux's cpuidle haltpoll governor).
///
/// Why poll at all: a thread that sleeps lets its CPU go idle, and on a VM an idle vCPU halts;
/// waking it again (the initiator's next command, a disk completion, a replica's reply) costs a
/// trip through the hypervisor. On the 2-vCPU VMs measured here that is tens of µs per wake-up,
/// several per I/O at queue depth 1, more than the software costs. A loop that polls for a short
/// while after its work runs out finds the next event already running, and nothing has to wake it.
///
/// Why adapt: polling burns the CPU it runs on. The window grows (doubling from `startNanos`,
/// capped at `maxNanos`) only when the last idle gap was short enough that a longer window would
/// have caught it, and halves (to zero below `startNanos`) after a gap longer than `maxNanos`,
/// so an idle or lightly used volume soon stops polling and one busy at low depth keeps it up.
/// The loop yields the CPU on every poll, so a runnable thread on the same CPU goes first; and
/// when a yield did hand the CPU over (the thread's involuntary context switches went up), the
/// CPU is busy with others' work and polling stops for a while: there it would only add context
/// switches (3 replicas and fio on 2 CPUs at depth 32: 10-20% fewer IOPS while it polled).
public struct IdlePoll: Sendable, Equatable {
    /// The longest window; 0 turns polling off.
    public let maxNanos: UInt64
    /// The first window after a gap a window would have caught.
    public let startNanos: UInt64
    /// How long the next idle period polls before it sleeps.
    public private(set) var windowNanos: UInt64 = 0
    /// Idle periods left that may not grow the window, after one whose polling gave the CPU away.
    public private(set) var holdOff = 0
    /// How many idle periods polling stays off after it gave the CPU away.
    public static let holdOffPeriods = 64

    /// Whether a poll that gave the CPU away stops polling (see `record`); tests turn it off to
    /// see polling work on a machine busy with other tests.
    public let backsOffWhenContended: Bool

    public static let off = IdlePoll(maxNanos: 0)

    public init(maxNanos: UInt64, startNanos: UInt64? = nil, backsOffWhenContended: Bool = true) {
        self.maxNanos = maxNanos
        self.startNanos = min(startNanos ?? max(maxNanos / 4, 1), maxNanos)
        self.backsOffWhenContended = backsOffWhenContended
    }

    public var enabled: Bool { maxNanos > 0 }

    /// Adapts the window after an idle period of `idleNanos` (from running out of work to the
    /// next event, the polling included). `contended`: while it polled, its yield handed the CPU
    /// to another thread that wanted it. Then polling only takes turns from threads with work, so
    /// it stops, and stays off for `holdOffPeriods` idle periods before it may grow again.
    public mutating func record(idleNanos: UInt64, contended: Bool = false) {
        guard enabled else { return }
        if contended && backsOffWhenContended {
            windowNanos = 0
            holdOff = Self.holdOffPeriods
            return
        }
        if holdOff > 0 {
            holdOff -= 1
            return
        }
        if idleNanos <= windowNanos {
            return
        } else if idleNanos <= maxNanos {
            windowNanos = min(max(windowNanos &* 2, startNanos), maxNanos)
        } else {
            windowNanos /= 2
            if windowNanos < startNanos { windowNanos = 0 }
        }
    }
}

/// How an event loop's idle periods ended (`EventLoop.idleStats`), for tests and `/metrics`.
public struct LoopIdleStats: Sendable, Equatable {
    /// Ended by an event found while polling: a sleep and a wake-up saved.
    public var polledHits: UInt64
    /// Ended in a sleep (no window, or nothing came within it).
    public var slept: UInt64
    /// Polls that handed the CPU to another thread (each turns polling off for a while).
    public var contended: UInt64
    /// The polling window now (0: not polling).
    public var windowNanos: UInt64

    public init(polledHits: UInt64 = 0, slept: UInt64 = 0, contended: UInt64 = 0, windowNanos: UInt64 = 0) {
        self.polledHits = polledHits
        self.slept = slept
        self.contended = contended
        self.windowNanos = windowNanos
    }
}
