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
/// The loop yields the CPU on every poll, so a runnable thread on the same CPU goes first.
public struct IdlePoll: Sendable, Equatable {
    /// The longest window; 0 turns polling off.
    public let maxNanos: UInt64
    /// The first window after a gap a window would have caught.
    public let startNanos: UInt64
    /// How long the next idle period polls before it sleeps.
    public private(set) var windowNanos: UInt64 = 0

    public static let off = IdlePoll(maxNanos: 0)

    public init(maxNanos: UInt64, startNanos: UInt64? = nil) {
        self.maxNanos = maxNanos
        self.startNanos = min(startNanos ?? max(maxNanos / 4, 1), maxNanos)
    }

    public var enabled: Bool { maxNanos > 0 }

    /// Adapts the window after an idle period of `idleNanos` (from running out of work to the
    /// next event, the polling included).
    public mutating func record(idleNanos: UInt64) {
        guard enabled else { return }
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
