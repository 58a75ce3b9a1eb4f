import ArgumentParser
import CairnIO

/// Options for the process's event loop, shared by `controller` and `replica`.
struct LoopOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Poll this long at most (e.g. 200us; 0 for never) for the next event before sleeping when idle.",
        discussion: "Adapts to the gaps seen, and stops while other threads want the CPU. On a VM a sleeping loop's vCPU halts, and waking it costs more than the software does per I/O."))
    var idlePoll: Duration = Duration(argument: "200us")!

    var idlePollPolicy: IdlePoll { IdlePoll(maxNanos: idlePoll.nanoseconds) }
}
