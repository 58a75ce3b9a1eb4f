import CairnIO
import CairnSCSI

/// Command runners and the response flusher: the connection's long-lived tasks.
///
/// A SCSI command runs on its own task so a slow store does not hold up the next PDU; a task
/// per command (and one per flush) cost about a dozen allocations per I/O, so commands go to a
/// RunnerPool and the flusher is one parked task. Task objects are recycled too.
extension ISCSIConnection {
    func newTask(itt: UInt32, lun: UInt64, cmdSN: UInt32, cdb: CDB, attribute: TaskAttribute,
                 writeLength: Int, readLength: Int) -> ISCSITask {
        let t = freeTasks.popLast() ?? ISCSITask()
        t.begin(itt: itt, lun: lun, cmdSN: cmdSN, cdb: cdb, attribute: attribute,
                writeLength: writeLength, readLength: readLength)
        return t
    }

    /// Hands a task whose data is complete to a runner.
    func start(_ task: ISCSITask) {
        task.state = .executing
        executing += 1
        // loop.spawn, not Task {}: a task without the loop's preference resumes every I/O
        // through the global pool (see EventLoop).
        if runners.submit(task) { loop.spawn { await self.runCommands() } }
    }

    func runCommands() async {
        var next = runners.firstWork()
        while var task = next {
            next = nil
            await execute(task)
            // Only a task nobody else holds is reused: a task-management function waiting on it
            // keeps its own reference and must see this command finished, not the next one.
            if isKnownUniquelyReferenced(&task) && freeTasks.count < window {
                freeTasks.append(task)
            }
            next = await withUnsafeContinuation { runners.park($0) }
        }
        runners.runnerEnded()
    }

    /// The connection is finished (no command executing, none will start): runners and the
    /// flusher end.
    func stopRunners() {
        runners.stop()
        freeTasks.removeAll()
        flusherStopped = true
        if let f = flusherParked {
            flusherParked = nil
            f.resume()
        }
    }

    /// Responses completed in the same loop turn leave in one writev: the flush runs as a job
    /// queued behind the completions already runnable.
    func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        if let f = flusherParked {
            flusherParked = nil
            f.resume()
        }
    }

    func flushLoop() async {
        while true {
            await withUnsafeContinuation { c in
                if flushScheduled || flusherStopped { c.resume() } else { flusherParked = c }
            }
            if flusherStopped { return }
            flushScheduled = false
            await writer.flush()
        }
    }
}
