import CairnIO
@testable import CairnISCSI
import Testing

/// Keys from a PDU's data segment.
func textOf(_ p: ISCSIPDU) -> TextKeys { (try? TextKeys.parse(p.data).get()) ?? TextKeys() }

/// Reads until a PDU that is not a NOP-In ping arrives.
func next(_ i: TestInitiator) async throws -> ISCSIPDU {
    while true {
        let p = try await i.receive()
        if p.bhs.opcode == .nopIn && p.bhs.initiatorTaskTag == 0xffff_ffff { continue }
        return p
    }
}

@Suite(.serialized) struct SessionTests {
    @Test func loginOpensANormalSessionAndLogoutClosesIt() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            let r = try await i.login()
            #expect(r.bhs.opcode == .loginResponse && r.bhs[36] == 0 && r.bhs[37] == 0)
            #expect(r.bhs.loginTransit && r.bhs.loginNSG == 3 && r.bhs.tsih != 0)
            #expect(textOf(r)["MaxRecvDataSegmentLength"] != nil)
            try await i.send(i.logout())
            let lo = try await next(i)
            #expect(lo.bhs.opcode == .logoutResponse && lo.bhs[2] == 0)
            await #expect(throws: IOError.self) { _ = try await i.receive() }
        }
        await t.stop()
    }

    @Test func discoverySendTargetsReturnsThePortal() async throws {
        let t = try await TestTarget()
        let port = t.port
        try await t.withInitiator { i in
            let r = try await i.login(target: nil, discovery: true)
            #expect(r.bhs[36] == 0)
            try await i.send(i.text([("SendTargets", "All")]))
            let tr = try await next(i)
            #expect(tr.bhs.opcode == .textResponse && tr.bhs.final)
            let k = textOf(tr)
            #expect(k["TargetName"] == targetIQN)
            #expect(k["TargetAddress"] == "127.0.0.1:\(port),1")
            // SCSI commands have no place in a discovery session.
            try await i.send(i.command(cdb: [0, 0, 0, 0, 0, 0]))
            let rej = try await next(i)
            #expect(rej.bhs.opcode == .reject && rej.bhs[2] == ISCSIRejectReason.protocolError.rawValue)
        }
        await t.stop()
    }

    @Test func wrongTargetNameFailsWithStatus0203AndCloses() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            let r = try await i.login(target: "iqn.2026-11.io.cairn:nope")
            #expect(r.bhs[36] == 2 && r.bhs[37] == 3)
            await #expect(throws: IOError.self) { _ = try await i.receive() }
        }
        await t.stop()
    }

    @Test func missingCHAPWhenRequiredFailsWith0201AndServesNothing() async throws {
        let t = try await TestTarget { $0.chap = CHAPCredentials(user: "u", secret: "secret-12chars") }
        try await t.withInitiator { i in
            let r = try await i.login()
            #expect(r.bhs[36] == 2 && r.bhs[37] == 1)
            try? await i.send(i.nopOut())
            await #expect(throws: IOError.self) { _ = try await i.receive() }
        }
        await t.stop()
    }

    @Test func failingCommandGetsCheckConditionWithSense() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            // A vendor-specific opcode: CHECK CONDITION from the stub and the real SCSI layer alike.
            let cmd = i.command(cdb: [0xc5, 0, 0, 0, 0, 0], read: 512)
            try await i.send(cmd)
            let r = try await next(i)
            #expect(r.bhs.opcode == .scsiResponse && r.bhs.initiatorTaskTag == cmd.bhs.initiatorTaskTag)
            #expect(r.bhs[3] == 0x02)
            #expect(r.data.count >= 2 && Int(r.data[0]) << 8 | Int(r.data[1]) == r.data.count - 2)
            #expect(r.data.count > 4 && r.data[4] & 0x0f == 0x05)  // ILLEGAL REQUEST
        }
        await t.stop()
    }

    @Test func writeIsSolicitedWithR2TsWithinMaxBurstAndOutstandingLimits() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxBurstLength", "4096"),
                                          ("FirstBurstLength", "4096"), ("MaxOutstandingR2T", "2")])
            let payload = (0..<12288).map { UInt8(truncatingIfNeeded: $0) }
            let cmd = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 24, 0], write: payload.count)
            let itt = cmd.bhs.initiatorTaskTag
            try await i.send(cmd)
            let r1 = try await next(i), r2 = try await next(i)
            #expect(r1.bhs.opcode == .r2t && r2.bhs.opcode == .r2t)
            #expect(r1.bhs.bufferOffset == 0 && r1.bhs.u32(44) == 4096 && r1.bhs.u32(36) == 0)
            #expect(r2.bhs.bufferOffset == 4096 && r2.bhs.u32(44) == 4096 && r2.bhs.u32(36) == 1)
            #expect(r1.bhs.initiatorTaskTag == itt && r1.bhs.targetTransferTag != r2.bhs.targetTransferTag)
            try await i.send(i.dataOut(itt: itt, ttt: r1.bhs.targetTransferTag, dataSN: 0, offset: 0, data: Array(payload[0..<4096])))
            let r3 = try await next(i)  // the third burst, once the first is in
            #expect(r3.bhs.opcode == .r2t && r3.bhs.bufferOffset == 8192 && r3.bhs.u32(36) == 2)
            try await i.send(i.dataOut(itt: itt, ttt: r2.bhs.targetTransferTag, dataSN: 0, offset: 4096, data: Array(payload[4096..<8192])))
            try await i.send(i.dataOut(itt: itt, ttt: r3.bhs.targetTransferTag, dataSN: 0, offset: 8192, data: Array(payload[8192...])))
            let resp = try await next(i)
            #expect(resp.bhs.opcode == .scsiResponse && resp.bhs.initiatorTaskTag == itt)
        }
        await t.stop()
    }

    @Test func immediateAndUnsolicitedDataNeedNoR2T() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "No"), ("ImmediateData", "Yes"), ("FirstBurstLength", "8192")])
            let cmd = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 16, 0], write: 8192, immediateData: [UInt8](repeating: 1, count: 4096), final: false)
            try await i.send(cmd)
            try await i.send(i.dataOut(itt: cmd.bhs.initiatorTaskTag, ttt: 0xffff_ffff, dataSN: 0, offset: 4096, data: [UInt8](repeating: 2, count: 4096)))
            let resp = try await next(i)
            #expect(resp.bhs.opcode == .scsiResponse && resp.bhs.initiatorTaskTag == cmd.bhs.initiatorTaskTag)
        }
        await t.stop()
    }

    @Test func dataOutWithWrongDataSNIsRejected() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No")])
            let cmd = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], write: 1024)
            try await i.send(cmd)
            let r2t = try await next(i)
            #expect(r2t.bhs.opcode == .r2t)
            try await i.send(i.dataOut(itt: cmd.bhs.initiatorTaskTag, ttt: r2t.bhs.targetTransferTag, dataSN: 27, offset: 0, data: [UInt8](repeating: 0, count: 1024)))
            let rej = try await next(i)
            #expect(rej.bhs.opcode == .reject && rej.bhs[2] == ISCSIRejectReason.protocolError.rawValue)
            #expect(BasicHeaderSegment(bytes: rej.data).initiatorTaskTag == cmd.bhs.initiatorTaskTag)
        }
        await t.stop()
    }

    @Test func dataOutForUnknownTransferTagIsRejected() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            try await i.send(i.dataOut(itt: 99, ttt: 0x1234, dataSN: 0, offset: 0, data: [1, 2, 3, 4]))
            let rej = try await next(i)
            #expect(rej.bhs.opcode == .reject && rej.bhs[2] == ISCSIRejectReason.protocolError.rawValue)
        }
        await t.stop()
    }

    @Test func reusedTaskTagWhileActiveIsRejected() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No")])
            let cmd = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], write: 1024, itt: 7)
            try await i.send(cmd)
            #expect(try await next(i).bhs.opcode == .r2t)
            try await i.send(i.command(cdb: [0, 0, 0, 0, 0, 0], itt: 7))
            let rej = try await next(i)
            #expect(rej.bhs.opcode == .reject && rej.bhs[2] == ISCSIRejectReason.taskInProgress.rawValue)
        }
        await t.stop()
    }

    @Test func commandOutsideCmdSNWindowIsSilentlyIgnored() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            try await i.send(i.command(cdb: [0, 0, 0, 0, 0, 0], cmdSN: i.maxCmdSN &+ 1))
            try await i.send(i.command(cdb: [0, 0, 0, 0, 0, 0], cmdSN: i.cmdSN &- 1))  // already used: too low
            let ping = i.nopOut(data: [7, 7, 7])
            try await i.send(ping)
            let r = try await next(i)
            #expect(r.bhs.opcode == .nopIn && r.bhs.initiatorTaskTag == ping.bhs.initiatorTaskTag && r.data == [7, 7, 7])
        }
        await t.stop()
    }

    @Test func abortTaskOfAWriteWaitingForDataCompletesAndFreesTheTag() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No")])
            let cmd = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], write: 1024)
            try await i.send(cmd)
            let r2t = try await next(i)
            try await i.send(i.taskManagement(function: 1, referencedTag: cmd.bhs.initiatorTaskTag, refCmdSN: cmd.bhs.cmdSN))
            let tmf = try await next(i)
            #expect(tmf.bhs.opcode == .taskManagementResponse && tmf.bhs[2] == 0)
            try await i.send(i.dataOut(itt: cmd.bhs.initiatorTaskTag, ttt: r2t.bhs.targetTransferTag, dataSN: 0, offset: 0, data: [UInt8](repeating: 0, count: 1024)))
            #expect(try await next(i).bhs.opcode == .reject)
            try await i.send(i.taskManagement(function: 1, referencedTag: 0x7777, refCmdSN: i.cmdSN &- 1))
            #expect(try await next(i).bhs[2] == 1)  // task does not exist
            try await i.send(i.taskManagement(function: 5))  // LOGICAL UNIT RESET
            #expect(try await next(i).bhs[2] == 0)
            try await i.send(i.taskManagement(function: 7))  // TARGET COLD RESET: done, then the connection closes
            #expect(try await next(i).bhs[2] == 0)
            await #expect(throws: (any Error).self) { _ = try await next(i) }
        }
        await t.stop()
    }

    @Test func sessionReinstatementClosesTheOldSession() async throws {
        let t = try await TestTarget()
        let loop = t.loop, port = t.port
        try await loop.run {
            let a = try TestInitiator(loop: loop, port: port)
            let b = try TestInitiator(loop: loop, port: port)  // same ISID and initiator name
            _ = try await a.login()
            let r = try await b.login()
            #expect(r.bhs[36] == 0 && r.bhs.tsih != a.tsih)
            await #expect(throws: (any Error).self) { _ = try await next(a) }
            let ping = b.nopOut()
            try await b.send(ping)
            #expect(try await next(b).bhs.initiatorTaskTag == ping.bhs.initiatorTaskTag)
            a.close(); b.close()
        }
        await t.stop()
    }

    @Test func digestsProtectHeadersAndDataOnceNegotiated() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            let r = try await i.login(extra: [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")])
            #expect(textOf(r)["HeaderDigest"] == "CRC32C" && i.headerDigest && i.dataDigest)
            let ping = i.nopOut(data: [1, 2, 3, 4, 5])
            try await i.send(ping)
            let pong = try await next(i)  // decoded with digests checked
            #expect(pong.bhs.opcode == .nopIn && pong.data == [1, 2, 3, 4, 5])
            // A corrupted header digest ends the connection.
            var bytes = i.nopOut().encode(headerDigest: true, dataDigest: true)
            bytes[48] ^= 0xff
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 8)
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            try await i.conn.write(from: p, count: bytes.count)
            p.deallocate()
            await #expect(throws: (any Error).self) { _ = try await next(i) }
        }
        await t.stop()
    }

    @Test func idleInitiatorIsPingedAndDroppedWhenSilent() async throws {
        let t = try await TestTarget {
            $0.nopInInterval = 50_000_000
            $0.nopInTimeout = 200_000_000
        }
        try await t.withInitiator { i in
            _ = try await i.login()
            let ping = try await i.receive()
            #expect(ping.bhs.opcode == .nopIn && ping.bhs.initiatorTaskTag == 0xffff_ffff && ping.bhs.targetTransferTag != 0xffff_ffff)
            try await i.send(i.nopOut(itt: 0xffff_ffff, ttt: ping.bhs.targetTransferTag))
            // Now stay silent: the target gives up on us.
            let start = monotonicNanos()
            await #expect(throws: IOError.self) { while true { _ = try await i.receive() } }
            #expect(monotonicNanos() - start >= 200_000_000)
        }
        await t.stop()
    }
}

@Suite(.serialized) struct ServerTests {
    @Test func everyPortalListensAndSendTargetsListsThemAll() async throws {
        let t = try await TestTarget {
            $0.portals = [ISCSIPortalAddress(host: "127.0.0.1", port: 0), ISCSIPortalAddress(host: "127.0.0.1", port: 0)]
        }
        let loop = t.loop
        let ports = await t.server.boundPortals.map(\.port)
        #expect(ports.count == 2 && ports[0] != ports[1])
        try await loop.run {
            for (n, port) in ports.enumerated() {
                let i = try TestInitiator(loop: loop, port: port, isid: 0x23d0_0000_0010 + UInt64(n))
                let r = try await i.login(target: nil, discovery: true)
                #expect(r.bhs[36] == 0)
                try await i.send(i.text([("SendTargets", "All")]))
                let k = textOf(try await next(i))
                #expect(k.pairs.filter { $0.key == "TargetAddress" }.map(\.value) == ports.map { "127.0.0.1:\($0),1" })
                i.close()
            }
        }
        await t.stop()
    }

    @Test func twoSessionsFromOneInitiatorThroughTwoPortalsCoexist() async throws {
        let t = try await TestTarget {
            $0.portals = [ISCSIPortalAddress(host: "127.0.0.1", port: 0), ISCSIPortalAddress(host: "127.0.0.1", port: 0)]
        }
        let loop = t.loop
        let ports = await t.server.boundPortals.map(\.port)
        try await loop.run {
            let a = try TestInitiator(loop: loop, port: ports[0], isid: 0x23d0_0000_0001)
            let b = try TestInitiator(loop: loop, port: ports[1], isid: 0x23d0_0000_0002)  // multipath: another ISID
            #expect(try await a.login().bhs[36] == 0)
            #expect(try await b.login().bhs[36] == 0)
            for i in [a, b] {
                let ping = i.nopOut()
                try await i.send(ping)
                #expect(try await next(i).bhs.initiatorTaskTag == ping.bhs.initiatorTaskTag)
            }
            a.close(); b.close()
        }
        await t.stop()
    }

    @Test func shutdownClosesSessionsAndStopsAccepting() async throws {
        let t = try await TestTarget()
        let loop = t.loop, port = t.port
        let i = try await loop.run { () -> TestInitiator in
            let i = try TestInitiator(loop: loop, port: port)
            _ = try await i.login()
            return i
        }
        async let done: Void = t.server.shutdown()
        try await loop.run {
            // The target asks us to log out (Async Message, event 1); we do, then it closes.
            let msg = try await next(i)
            #expect(msg.bhs.opcode == .asyncMessage && msg.bhs[36] == 1)
            try await i.send(i.logout())
            #expect(try await next(i).bhs.opcode == .logoutResponse)
            await #expect(throws: (any Error).self) { _ = try await next(i) }
            i.close()
        }
        await done
        _ = try await loop.run {
            #expect(throws: (any Error).self) { _ = try tcpConnect(loop: loop, host: "127.0.0.1", port: port) }
        }
        #expect(await t.server.connectionCount == 0)
        loop.stopAndJoin()
    }

    @Test func manyCommandsInFlightAllGetAnswers() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            var itts: Set<UInt32> = []
            for _ in 0..<64 {
                let c = i.command(cdb: [0xc5, 0, 0, 0, 0, 0], read: 512)
                itts.insert(c.bhs.initiatorTaskTag)
                try await i.send(c)
            }
            var statSNs: [UInt32] = []
            while !itts.isEmpty {
                let r = try await next(i)
                #expect(r.bhs.opcode == .scsiResponse)
                #expect(itts.remove(r.bhs.initiatorTaskTag) != nil)
                statSNs.append(r.bhs.u32(24))
            }
            #expect(statSNs == Array(statSNs[0]..<(statSNs[0] + 64)))  // StatSN increases by one per status
        }
        await t.stop()
    }
}

@Suite struct LoginTimeoutTests {
    @Test func connectionThatNeverLogsInIsClosed() async throws {
        let t = try await TestTarget { $0.loginTimeout = 100_000_000 }
        try await t.withInitiator { i in
            let start = monotonicNanos()
            await #expect(throws: (any Error).self) { _ = try await i.receive() }
            #expect(monotonicNanos() - start >= 100_000_000)
        }
        await t.stop()
    }
}

@Suite struct DataPathTests {
    /// With the SCSI layer in place the data must come back intact, split at our MaxRecvDataSegmentLength
    /// with status in the last Data-In; with the stub, both commands must end in CHECK CONDITION.
    @Test func writeThroughR2TThenReadBackInDataInPDUs() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("MaxRecvDataSegmentLength", "1024"), ("InitialR2T", "Yes"), ("ImmediateData", "No")])
            let payload = (0..<4096).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
            let w = i.command(cdb: [0x2a, 0, 0, 0, 0, 10, 0, 0, 8, 0], write: 4096)
            try await i.send(w)
            var first = try await next(i)
            var writeOK = false
            if first.bhs.opcode == .r2t {
                #expect(first.bhs.bufferOffset == 0 && first.bhs.u32(44) == 4096)
                try await i.send(i.dataOut(itt: w.bhs.initiatorTaskTag, ttt: first.bhs.targetTransferTag, dataSN: 0, offset: 0, data: payload))
                first = try await next(i)
            }
            #expect(first.bhs.opcode == .scsiResponse && first.bhs.initiatorTaskTag == w.bhs.initiatorTaskTag)
            writeOK = first.bhs[3] == 0
            let r = i.command(cdb: [0x28, 0, 0, 0, 0, 10, 0, 0, 8, 0], read: 4096)
            try await i.send(r)
            if writeOK {
                var data: [UInt8] = []
                var sn: UInt32 = 0
                while true {
                    let p = try await next(i)
                    #expect(p.bhs.opcode == .dataIn && p.bhs.initiatorTaskTag == r.bhs.initiatorTaskTag)
                    #expect(p.bhs.dataSN == sn && Int(p.bhs.bufferOffset) == data.count && p.data.count <= 1024)
                    data += p.data
                    sn += 1
                    if p.bhs[1] & 0x01 != 0 {  // S bit: status in the last Data-In
                        #expect(p.bhs[3] == 0 && p.bhs[1] & 0x80 != 0)
                        break
                    }
                }
                #expect(sn == 4)
                #expect(data == payload)
            } else {
                let p = try await next(i)
                #expect(p.bhs.opcode == .scsiResponse && p.bhs[3] == 0x02)
            }
        }
        await t.stop()
    }
}

@Suite struct CrossSessionTests {
    @Test func logicalUnitResetInOneSessionAbortsTheOtherSessionsTasks() async throws {
        let t = try await TestTarget()
        let loop = t.loop, port = t.port
        try await loop.run {
            let a = try TestInitiator(loop: loop, port: port, isid: 0x23d0_0000_0001)
            let b = try TestInitiator(loop: loop, port: port, isid: 0x23d0_0000_0002)
            _ = try await a.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No")])
            _ = try await b.login()
            let w = a.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], write: 512)
            try await a.send(w)
            let r2t = try await next(a)
            #expect(r2t.bhs.opcode == .r2t)
            try await b.send(b.taskManagement(function: 5))  // LOGICAL UNIT RESET on LUN 0
            #expect(try await next(b).bhs[2] == 0)
            // a's write was aborted with the reset: its transfer tag is gone.
            try await a.send(a.dataOut(itt: w.bhs.initiatorTaskTag, ttt: r2t.bhs.targetTransferTag, dataSN: 0, offset: 0, data: [UInt8](repeating: 0, count: 512)))
            let rej = try await next(a)
            #expect(rej.bhs.opcode == .reject)
            a.close(); b.close()
        }
        await t.stop()
    }
}

@Suite struct FlowControlTests {
    @Test func cmdSNWindowClosesWhileTooMuchWriteDataIsHeld() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login(extra: [("InitialR2T", "Yes"), ("ImmediateData", "No")])
            // Five 64 MiB writes waiting for data hold more than the 256 MiB budget.
            var last = ISCSIPDU(bhs: BasicHeaderSegment())
            for _ in 0..<5 {
                let w = i.command(cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0x80, 0, 0], write: 64 << 20)
                try await i.send(w)
                last = try await next(i)
                #expect(last.bhs.opcode == .r2t)
            }
            #expect(last.bhs.u32(32) == last.bhs.u32(28) &- 1)  // MaxCmdSN = ExpCmdSN - 1: window closed
            // Aborting them reopens it.
            try await i.send(i.taskManagement(function: 2))  // ABORT TASK SET
            let tmf = try await next(i)
            #expect(tmf.bhs[2] == 0 && snLess(tmf.bhs.u32(28), tmf.bhs.u32(32)))
        }
        await t.stop()
    }
}

@Suite struct MalformedPDUTests {
    @Test func dataSegmentOverMaxRecvDataSegmentLengthIsRejectedAndClosed() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            try await i.send(i.nopOut(data: [UInt8](repeating: 1, count: 262_144 + 4)))
            let rej = try await next(i)
            #expect(rej.bhs.opcode == .reject && rej.bhs[2] == ISCSIRejectReason.protocolError.rawValue)
            await #expect(throws: (any Error).self) { _ = try await next(i) }
        }
        await t.stop()
    }

    @Test func unknownOpcodeAndSNACKAreRejectedAndTheSessionGoesOn() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            _ = try await i.login()
            var unknown = BasicHeaderSegment()
            unknown[0] = 0x1c
            unknown[1] = 0x80
            try await i.send(ISCSIPDU(bhs: unknown))
            let r1 = try await next(i)
            #expect(r1.bhs.opcode == .reject && r1.bhs[2] == ISCSIRejectReason.commandNotSupported.rawValue)
            #expect(BasicHeaderSegment(bytes: r1.data) == unknown)
            var snack = BasicHeaderSegment()
            snack.setOpcode(.snackRequest)
            snack[1] = 0x80
            try await i.send(ISCSIPDU(bhs: snack))
            let r2 = try await next(i)
            #expect(r2.bhs.opcode == .reject && r2.bhs[2] == ISCSIRejectReason.protocolError.rawValue)
            let ping = i.nopOut()
            try await i.send(ping)
            #expect(try await next(i).bhs.initiatorTaskTag == ping.bhs.initiatorTaskTag)
        }
        await t.stop()
    }

    @Test func garbageBeforeLoginClosesTheConnectionOnly() async throws {
        let t = try await TestTarget()
        try await t.withInitiator { i in
            try await i.send(ISCSIPDU(bhs: BasicHeaderSegment(bytes: [UInt8](repeating: 0xff, count: 48))))
            await #expect(throws: (any Error).self) { _ = try await i.receive() }
        }
        // The target still serves others.
        try await t.withInitiator { i in
            let r = try await i.login()
            #expect(r.bhs[36] == 0)
        }
        await t.stop()
    }
}
