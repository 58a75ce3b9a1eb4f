import CairnIO
import CairnSCSI
import Logging

/// SCSI commands, Data-Out/R2T flow, responses and task management.
extension ISCSIConnection {
    /// The largest write we buffer for one command (it is gathered in full before execution).
    static let maxWriteLength = 64 << 20

    func handleSCSICommand(_ bhs: BasicHeaderSegment, ahs: [UInt8]) async throws {
        let len = bhs.dataSegmentLength
        guard admit(bhs) == .accept else {
            _ = try await readData(len, into: nil)
            return
        }
        let itt = bhs.initiatorTaskTag
        func refuse(_ reason: ISCSIRejectReason, _ why: String) async throws {
            _ = try await readData(len, into: nil)
            await reject(bhs, reason, why)
        }
        if draining { return try await refuse(.waitingForLogout, "target shutting down") }
        if itt == 0xffff_ffff { return try await refuse(.invalidPDUField, "reserved ITT") }
        if tasks[itt] != nil { return try await refuse(.taskInProgress, "ITT 0x\(String(itt, radix: 16)) already in use") }
        // Immediate commands bypass the CmdSN window; this bounds what they can hold.
        if bhs.immediate && tasks.count >= window { return try await refuse(.immediateCommandRejected, "too many tasks") }
        let edtl = Int(bhs.expectedDataTransferLength)
        var writeLength = bhs.writeFlag ? edtl : 0
        var readLength = bhs.readFlag ? edtl : 0
        if bhs.readFlag && bhs.writeFlag {
            // Bidirectional: the read length is in a Bidirectional Read AHS (type 2, §11.3.2).
            guard let r = bidiReadLength(ahs) else { return try await refuse(.invalidPDUField, "bidirectional command without read-length AHS") }
            readLength = r
        }
        if !bhs.writeFlag && len > 0 { return try await refuse(.protocolError, "data segment on a command without W bit") }
        if writeLength > Self.maxWriteLength { return try await refuse(.invalidPDUField, "expected data transfer length \(edtl) too large") }
        if len > 0 && !params.immediateData { return try await refuse(.protocolError, "immediate data when ImmediateData=No") }
        if len > writeLength || len > params.firstBurstLength {
            return try await refuse(.protocolError, "immediate data \(len) exceeds EDTL \(writeLength) or FirstBurstLength")
        }
        if !bhs.writeFlag { writeLength = 0 }
        let attribute = TaskAttribute(rawValue: bhs.taskAttribute) ?? .simple
        var cdb = CDB()
        withUnsafeBytes(of: bhs.raw) { cdb = CDB($0.baseAddress! + 32, count: 16) }
        let task = newTask(itt: itt, lun: bhs.lun, cmdSN: bhs.cmdSN, cdb: cdb, attribute: attribute,
                           writeLength: writeLength, readLength: readLength)
        task.edtl = bhs.writeFlag ? edtl : 0
        if writeLength > 0 {
            task.dataOut = loop.buffers.take(writeLength)
            writeBytesHeld += writeLength
        }
        tasks.insert(task)
        guard try await readPayload(task, bhs, len, at: 0, what: "immediate data") else { return }
        task.received = len
        if task.dataComplete {
            start(task)
            return
        }
        if !bhs.final && !params.initialR2T {
            task.unsolicitedLimit = min(params.firstBurstLength, writeLength)
            task.expectingUnsolicited = task.received < task.unsolicitedLimit
        }
        task.nextR2TOffset = task.received
        if !task.expectingUnsolicited { await issueR2Ts(task) }
    }

    func bidiReadLength(_ ahs: [UInt8]) -> Int? {
        var i = 0
        while i + 4 <= ahs.count {
            let l = Int(ahs[i]) << 8 | Int(ahs[i + 1])
            let type = ahs[i + 2]
            if type == 2 && l == 5 && i + 8 <= ahs.count {
                return Int(ahs[i + 4]) << 24 | Int(ahs[i + 5]) << 16 | Int(ahs[i + 6]) << 8 | Int(ahs[i + 7])
            }
            i += padded4(3 + l)  // AHSLength counts the bytes after the type byte; each AHS is padded to 4
        }
        return nil
    }

    func handleDataOut(_ bhs: BasicHeaderSegment) async throws {
        let len = bhs.dataSegmentLength
        let ttt = bhs.targetTransferTag
        let itt = bhs.initiatorTaskTag
        func refuse(_ reason: ISCSIRejectReason, _ why: String, failing task: ISCSITask? = nil) async throws {
            _ = try await readData(len, into: nil)
            if let task { dropTask(task) }
            await reject(bhs, reason, why)
        }
        let task: ISCSITask
        var r2tIndex: Int?
        if ttt == 0xffff_ffff {
            guard let t = tasks[itt], t.state == .collecting, t.expectingUnsolicited else {
                return try await refuse(.protocolError, "unsolicited Data-Out for ITT 0x\(String(itt, radix: 16)) not expecting it")
            }
            task = t
        } else {
            guard let t = tasks.task(forTTT: ttt), t.itt == itt, t.state == .collecting,
                  let i = t.r2ts.firstIndex(where: { $0.ttt == ttt }) else {
                return try await refuse(.protocolError, "Data-Out with unknown TTT 0x\(String(ttt, radix: 16))")
            }
            task = t
            r2tIndex = i
        }
        let offset = Int(bhs.bufferOffset)
        let wantSN: UInt32, wantOffset: Int, limit: Int
        if let i = r2tIndex {
            let r = task.r2ts[i]
            wantSN = r.nextDataSN; wantOffset = r.offset + r.received; limit = r.offset + r.length
        } else {
            wantSN = task.unsolicitedDataSN; wantOffset = task.received; limit = task.unsolicitedLimit
        }
        guard bhs.dataSN == wantSN else {
            return try await refuse(.protocolError, "Data-Out DataSN \(bhs.dataSN), expected \(wantSN)", failing: task)
        }
        guard offset == wantOffset, len <= limit - offset else {
            return try await refuse(.protocolError, "Data-Out offset \(offset) length \(len), expected offset \(wantOffset) limit \(limit)", failing: task)
        }
        guard try await readPayload(task, bhs, len, at: offset, what: "Data-Out") else { return }
        task.received += len
        if let i = r2tIndex {
            task.r2ts[i].received += len
            task.r2ts[i].nextDataSN &+= 1
            if task.r2ts[i].received >= task.r2ts[i].length {
                tasks.releaseTTT(ttt)
                task.r2ts.remove(at: i)
            } else if bhs.final {
                dropTask(task)
                await reject(bhs, .protocolError, "F bit before the R2T's data was complete")
                return
            }
        } else {
            task.unsolicitedDataSN &+= 1
            if bhs.final || task.received >= task.unsolicitedLimit {
                task.expectingUnsolicited = false
                task.nextR2TOffset = task.received
            }
        }
        if task.dataComplete {
            start(task)
        } else if !task.expectingUnsolicited {
            await issueR2Ts(task)
        }
    }

    /// Reads a command's payload straight into its data-out buffer at `offset`. False when the
    /// task must not go on: it was aborted meanwhile (buffer released), or the data digest failed
    /// (task dropped, Reject sent).
    func readPayload(_ task: ISCSITask, _ bhs: BasicHeaderSegment, _ len: Int, at offset: Int, what: String) async throws -> Bool {
        guard len > 0, let buf = task.dataOut else { return true }
        task.busyReading = true
        let ok = try await readData(len, into: buf.base + offset)
        task.busyReading = false
        if task.aborted {
            releaseData(task)
            return false
        }
        guard ok else {
            dropTask(task)
            await reject(bhs, .dataDigestError, "data digest error in \(what)")
            return false
        }
        return true
    }

    /// Asks for the rest of a write, up to MaxOutstandingR2T bursts of MaxBurstLength at a time.
    func issueR2Ts(_ task: ISCSITask) async {
        var sent = false
        while task.r2ts.count < params.maxOutstandingR2T && task.nextR2TOffset < task.writeLength {
            let off = task.nextR2TOffset
            let l = min(params.maxBurstLength, task.writeLength - off)
            let ttt = tasks.newTTT(for: task.itt)
            task.r2ts.append(R2TState(ttt: ttt, offset: off, length: l))
            var h = BasicHeaderSegment.r2t(lun: task.lun, itt: task.itt, ttt: ttt, r2tSN: task.r2tSN,
                                           offset: UInt32(truncatingIfNeeded: off), length: UInt32(truncatingIfNeeded: l))
            h.setSequence(statSN: statSN, expCmdSN: expCmdSN, maxCmdSN: maxCmdSN)  // R2T does not advance StatSN
            task.r2tSN &+= 1
            task.nextR2TOffset += l
            writer.enqueue(OutPDU(bhs: h))
            sent = true
        }
        if sent { await writer.flush() }
    }

    /// Drops a task that will not run (abort, protocol error): its tags and buffer go.
    func dropTask(_ task: ISCSITask) {
        task.aborted = true
        tasks.remove(task)
        if !task.busyReading { releaseData(task) }
        task.finish()
    }

    func releaseData(_ task: ISCSITask) {
        if let b = task.dataOut {
            writeBytesHeld -= b.count
            loop.buffers.give(b)
            task.dataOut = nil
        }
    }

    func execute(_ task: ISCSITask) async {
        if let nexus {
            let cmd = SCSICommand(lun: task.lun, cdb: task.cdb, nexus: nexus, taskTag: task.itt, attribute: task.attribute,
                                  dataOut: task.dataOut, dataOutLength: task.received, expectedDataInLength: task.readLength)
            let resp = await target.execute(cmd)
            releaseData(task)
            tasks.remove(task)
            if task.aborted || ended {
                if let d = resp.dataIn { loop.buffers.give(d) }
            } else {
                queueResponse(task, resp)
            }
        } else {
            releaseData(task)
            tasks.remove(task)
        }
        executing -= 1
        task.finish()
        if executing == 0 {
            let w = idleWaiters
            idleWaiters = []
            for c in w { c.resume() }
        }
        scheduleFlush()
    }

    /// Data-In PDUs split at the initiator's MaxRecvDataSegmentLength (F at each MaxBurstLength),
    /// status in the last one when there is no sense data, else a SCSI Response (§11.4, §11.7).
    func queueResponse(_ task: ISCSITask, _ resp: SCSIResponse) {
        let produced = max(0, resp.dataInLength)
        let capacity = resp.dataIn?.count ?? 0
        let expected = task.readLength
        let n = min(produced, expected, capacity)
        var res = Residual()
        if task.readLength == 0, produced == 0, let wanted = resp.expectedDataOutLength {
            // Data-out commands: what the CDB called for against the EDTL the initiator sent
            // (§11.4.5); the SCSI layer knows each command's length, so no CDB decoding here.
            res = Residual(wanted: UInt64(wanted), expected: UInt64(task.edtl))
        } else if task.readLength > 0 || produced > 0 {
            res = Residual(wanted: UInt64(produced), expected: UInt64(expected))
        }
        let statusInData = resp.status == .good && resp.sense.count == 0 && n > 0
        var dataSN: UInt32 = 0
        if let dataIn = resp.dataIn {
            for seg in DataInSplitter(total: n, maxSegment: params.initiatorMaxRecvDataSegmentLength, maxBurst: params.maxBurstLength) {
                let withStatus = seg.last && statusInData
                var h = BasicHeaderSegment.dataIn(final: seg.final, status: withStatus ? resp.status.rawValue : nil,
                                                  overflow: res.overflow, underflow: res.underflow, residual: res.count, lun: task.lun,
                                                  itt: task.itt, dataSN: dataSN, offset: UInt32(truncatingIfNeeded: seg.offset),
                                                  dataLength: seg.length)
                if withStatus {
                    stamp(&h)
                } else {
                    h.setU32(28, expCmdSN)
                    h.setU32(32, maxCmdSN)
                }
                writer.enqueue(OutPDU(bhs: h, buffer: dataIn.slice(seg.offset, seg.length), release: seg.last ? dataIn : nil))
                dataSN &+= 1
            }
            if n == 0 { loop.buffers.give(dataIn) }
        }
        if statusInData { return }
        var body: [UInt8] = []
        if resp.sense.count > 0 {
            body = [UInt8(resp.sense.count >> 8), UInt8(truncatingIfNeeded: resp.sense.count)] + resp.sense.array
        }
        var h = BasicHeaderSegment.scsiResponse(itt: task.itt, status: resp.status.rawValue, overflow: res.overflow, underflow: res.underflow,
                                                residual: res.count, expDataSN: dataSN &+ task.r2tSN, dataLength: body.count)
        stamp(&h)
        writer.enqueue(OutPDU(bhs: h, small: body))
    }

    // MARK: - Task management

    func handleTaskManagement(_ bhs: BasicHeaderSegment) async throws {
        let len = bhs.dataSegmentLength
        _ = try await readData(len, into: nil)
        guard admit(bhs) == .accept else { return }
        // Runs on its own so the reader keeps going while aborted tasks finish.
        loop.spawn { await self.runTaskManagement(bhs) }
    }

    func runTaskManagement(_ bhs: BasicHeaderSegment) async {
        let lun = bhs.lun
        var response: TaskManagementResponse
        let nexus = self.nexus ?? ITNexus(initiatorName: params.initiatorName, isid: params.isid, portalGroupTag: info.portalGroupTag)
        switch bhs.tmfFunction {
        case 1:  // ABORT TASK
            let ref = bhs.referencedTaskTag
            if let t = tasks[ref] {
                await abort([t])
                response = await target.taskManagement(.abortTask(tag: ref), lun: lun, nexus: nexus)
                if response == .taskDoesNotExist { response = .functionComplete }
            } else {
                // §11.5.1: a command never received but within the window counts as received, and done.
                let r = bhs.refCmdSN
                if snLessOrEqual(expCmdSN, r) && snLessOrEqual(r, maxCmdSN) && snLess(r, bhs.cmdSN) {
                    if r == expCmdSN {
                        expCmdSN &+= 1
                        while aheadCmdSNs.remove(expCmdSN) != nil { expCmdSN &+= 1 }
                    } else {
                        aheadCmdSNs.insert(r)
                    }
                    response = .functionComplete
                } else {
                    response = .taskDoesNotExist
                }
            }
        case 2, 4, 5:  // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET
            let fn: TaskManagementFunction = bhs.tmfFunction == 2 ? .abortTaskSet : (bhs.tmfFunction == 4 ? .clearTaskSet : .logicalUnitReset)
            await abort(tasks.all.filter { $0.lun == lun })
            if fn != .abortTaskSet { await server.abortTasks(lun: lun, except: self) }
            response = await target.taskManagement(fn, lun: lun, nexus: nexus)
        case 6:  // TARGET WARM RESET
            await abort(tasks.all)
            await server.abortTasks(lun: nil, except: self)
            response = await target.taskManagement(.targetWarmReset, lun: lun, nexus: nexus)
        case 3:  // CLEAR ACA
            response = await target.taskManagement(.clearACA, lun: lun, nexus: nexus)
        case 8:
            response = .reassignmentNotSupported
        case 7:  // TARGET COLD RESET: a warm reset, then every connection closes (below)
            await abort(tasks.all)
            await server.abortTasks(lun: nil, except: self)
            response = await target.taskManagement(.targetColdReset, lun: lun, nexus: nexus)
        default:
            response = .functionRejected
        }
        if response != .functionComplete {
            logger.notice("task management function \(bhs.tmfFunction) on LUN \(lun): \(response)")
        }
        var h = BasicHeaderSegment.taskManagementResponse(itt: bhs.initiatorTaskTag, response: response.rawValue)
        stamp(&h)
        await send(OutPDU(bhs: h))
        if bhs.tmfFunction == 7 && response == .functionComplete {
            // §11.5.1: after the response, the target terminates all of its TCP connections to
            // all initiators (all sessions), this one last so the response leaves first.
            logger.notice("target cold reset: closing every connection")
            await server.terminateAll(except: self)
            await writer.drain()
            ended = true
            socket.shutdown()
        }
    }

    /// Aborts tasks: those waiting for data go at once; executing ones finish in the SCSI layer
    /// (a store I/O can't be cancelled) and their responses are suppressed. Returns when all are done.
    func abort(_ list: [ISCSITask]) async {
        for t in list {
            t.aborted = true
            if t.state == .collecting { dropTask(t) }
        }
        // Those waiting for the volume's QoS limit leave its queue now rather than at their turn.
        if let nexus, list.contains(where: { $0.state == .executing && !$0.done }) {
            await target.cancelThrottled(nexus: nexus, tags: Set(list.map(\.itt)))
        }
        // SANITIZE is the exception SBC-3 makes (4.11): the sanitize operation goes on through
        // aborts and resets, so waiting for it would hold the TMF for the whole overwrite. Its
        // response is suppressed all the same.
        for t in list where !t.done && t.cdb.opcode != 0x48 {
            // Checked again inside: the body runs isolated, so the task cannot finish between
            // the check and the registration (a check before the await alone can race).
            await withCheckedContinuation { c in if t.done { c.resume() } else { t.waiters.append(c) } }
        }
    }

    /// Another session's LU or target reset reaches this session's tasks.
    func abortForReset(lun: UInt64?) async {
        await abort(tasks.all.filter { lun == nil || $0.lun == lun })
    }
}
