import Foundation
import Glibc
import Synchronization
import Testing

/// A second, well-behaved session that writes and verifies 4 KiB blocks until told to stop.
/// It proves that abuse on one connection leaves the other sessions unharmed.
final class VerifyingWorkload: Sendable {
    let ops = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let stopFlag = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let firstError = Mutex<String?>(nil)

    func start(port: UInt16, target: String) {
        let thread = Thread { [self] in
            defer { finished.store(true, ordering: .sequentiallyConsistent) }
            do {
                let client = try RawISCSIClient(port: port)
                try client.login(target: target, initiator: "iqn.2026-11.test:workload", isid: 0x80_0000_0002)
                var i: UInt32 = 0
                while !stopFlag.load(ordering: .relaxed) {
                    let lba = (i &* 8) % 100_000
                    let pattern = (0..<4096).map { UInt8(truncatingIfNeeded: Int($0) &+ Int(i)) }
                    let w = try client.scsi(RawISCSIClient.write10(lba: lba, blocks: 8), writeData: pattern)
                    let r = try client.scsi(RawISCSIClient.read10(lba: lba, blocks: 8), readLength: 4096)
                    if w.status != 0 || r.status != 0 || r.data != pattern {
                        record("block \(lba): write status \(w.status), read status \(r.status), data equal \(r.data == pattern)")
                    }
                    ops.add(1, ordering: .relaxed)
                    i &+= 1
                }
            } catch {
                record("\(error)")
            }
        }
        thread.start()
    }

    private func record(_ what: String) {
        errors.add(1, ordering: .relaxed)
        firstError.withLock { if $0 == nil { $0 = what } }
    }

    /// Waits until `n` more operations completed (bounded), so the workload demonstrably ran on.
    func waitForProgress(_ n: Int, seconds: Int = 20) -> Bool {
        let start = ops.load(ordering: .relaxed)
        let deadline = time(nil) + seconds
        while time(nil) < deadline {
            if ops.load(ordering: .relaxed) >= start + n { return true }
            if finished.load(ordering: .relaxed) { return false }
            usleep(10_000)
        }
        return false
    }

    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        let deadline = time(nil) + 10
        while !finished.load(ordering: .relaxed) && time(nil) < deadline { usleep(10_000) }
    }
}

/// The ways a hostile or broken initiator misbehaves, each with the answer RFC 7143 gives it.
enum Abuse: String, CaseIterable, Sendable {
    case garbageBeforeLogin
    case truncatedHeader
    case oversizedDataSegment
    case cmdSNOutsideWindow
    case unknownOpcode
    case reusedITT
    case unknownLoginKey
    case malformedLoginKey
    case dataOutWithoutR2T
}

@Suite(.serialized) struct BadInputTests {
    static func localPort(_ fd: Int32) -> UInt16 {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: addr.sin_port)
    }

    static func reject(_ r: RawISCSIClient.Received) -> UInt8? {
        if case .pdu(let h, _) = r, h[0] & 0x3f == 0x3f { return h[2] }
        return nil
    }

    @Test(.timeLimit(.minutes(2)), arguments: Abuse.allCases)
    func abuseGetsTheProtocolsAnswerAndOtherSessionsRunOn(_ abuse: Abuse) throws {
        let controller = try CairnController(name: "badinput")
        defer { _ = controller.stop() }
        let workload = VerifyingWorkload()
        workload.start(port: controller.port, target: controller.iqn)
        #expect(workload.waitForProgress(20), "the workload session should run before the abuse")

        let bad = try RawISCSIClient(port: controller.port, timeoutSeconds: 3)
        let badPort = BadInputTests.localPort(bad.fd)
        switch abuse {
        case .garbageBeforeLogin:
            try bad.send([UInt8](repeating: 0xEE, count: 48))
            // Either a login reject with an initiator-error status then close, or a close.
            let r = bad.receivePDU()
            if case .pdu(let h, _) = r {
                #expect(h[0] & 0x3f == 0x23 && h[36] == 0x02, "expected a login response with status class 2")
                #expect(bad.waitsForClose())
            } else {
                #expect(r == .closed)
            }

        case .truncatedHeader:
            try bad.login(target: controller.iqn)
            try bad.send(Array(bad.commandHeader(cdb: [0], read: false, write: false, edtl: 0, itt: 7).prefix(20)))
            shutdown(bad.fd, Int32(SHUT_WR))
            #expect(bad.waitsForClose(), "EOF in the middle of a header closes the connection")

        case .oversizedDataSegment:
            try bad.login(target: controller.iqn)
            var h = bad.commandHeader(cdb: RawISCSIClient.write10(lba: 0, blocks: 8), read: false, write: true, edtl: 4096, itt: 9)
            h[5] = 0xFF; h[6] = 0xFF; h[7] = 0xFC  // a 16 MiB data segment, beyond any negotiated limit
            try bad.send(h)
            let r = bad.receivePDU()
            if let reason = BadInputTests.reject(r) {
                #expect([0x04, 0x09].contains(reason), "Reject reason \(reason)")
            } else {
                #expect(r == .closed, "expected Reject or close, got \(r)")
            }

        case .cmdSNOutsideWindow:
            try bad.login(target: controller.iqn)
            let saved = bad.cmdSN
            bad.cmdSN = saved &+ 0x0010_0000
            try bad.send(RawISCSIClient.pdu(bad.commandHeader(cdb: [0, 0, 0, 0, 0, 0], read: false, write: false, edtl: 0, itt: 11)))
            bad.cmdSN = saved
            // Silently: no answer to it (an idle-connection ping from the target may still come
            // on a slow machine, and is answered).
            #expect(try bad.receiveAnsweringPings() == .timedOut, "a command outside the CmdSN window is silently ignored")
            #expect(try bad.ping(), "the connection stays up")
            let tur = try bad.scsi([0, 0, 0, 0, 0, 0])
            #expect(tur.status == 0, "the next in-window command is served")

        case .unknownOpcode:
            try bad.login(target: controller.iqn)
            var h = bad.nopOutHeader(itt: 13)
            h[0] = 0x1c  // a reserved initiator opcode
            try bad.send(RawISCSIClient.pdu(h))
            let reason = BadInputTests.reject(bad.receivePDU())
            #expect(reason == 0x04 || reason == 0x05, "Reject (protocol error / command not supported), got \(String(describing: reason))")

        case .reusedITT:
            try bad.login(target: controller.iqn)
            // A write with no immediate data waits for its R2T'd data: its ITT stays in use.
            let cdb = RawISCSIClient.write10(lba: 0, blocks: 128)
            try bad.send(RawISCSIClient.pdu(bad.commandHeader(cdb: cdb, read: false, write: true, edtl: 65536, itt: 21)))
            bad.cmdSN &+= 1
            try bad.send(RawISCSIClient.pdu(bad.commandHeader(cdb: [0, 0, 0, 0, 0, 0], read: false, write: false, edtl: 0, itt: 21)))
            bad.cmdSN &+= 1
            var reason: UInt8?
            var closed = false
            for _ in 0..<4 {
                let r = bad.receivePDU()
                if let x = BadInputTests.reject(r) { reason = x; break }
                if r == .closed { closed = true; break }
                if r == .timedOut { break }
            }
            #expect(closed || [0x04, 0x07, 0x09].contains(reason ?? 0), "Reject (task in progress) or close, got \(String(describing: reason))")

        case .unknownLoginKey:
            let keys = try bad.login(target: controller.iqn, extra: [("CairnBogusKey", "1")])
            #expect(keys["CairnBogusKey"] == "NotUnderstood")
            #expect(try bad.ping())

        case .malformedLoginKey:
            var data = RawISCSIClient.keys([("InitiatorName", "iqn.2026-11.test:raw"), ("TargetName", controller.iqn),
                                            ("SessionType", "Normal")])
            data += Array("this-has-no-equals-sign".utf8) + [0]
            let r = try bad.loginStep(isid: 0x80_0000_0009, csg: 1, nsg: 3, transit: true, keys: data)
            if case .pdu(let h, _) = r {
                #expect(h[0] & 0x3f == 0x23 && h[36] == 0x02, "login fails with an initiator-error status, got \(h[36])/\(h[37])")
            } else {
                #expect(r == .closed)
            }

        case .dataOutWithoutR2T:
            try bad.login(target: controller.iqn)
            try bad.send(RawISCSIClient.pdu(bad.dataOutHeader(itt: 0x7777, ttt: 0x1234, dataSN: 0, offset: 0, final: true),
                                            data: [UInt8](repeating: 1, count: 512)))
            let r = bad.receivePDU()
            if let reason = BadInputTests.reject(r) {
                #expect([0x04, 0x09].contains(reason), "Reject reason \(reason)")
            } else {
                #expect(r == .closed, "expected Reject or close, got \(r)")
            }
        }

        #expect(workload.waitForProgress(20), "the other session runs on after the abuse")
        workload.stop()
        #expect(workload.errors.load(ordering: .relaxed) == 0, "workload: \(workload.firstError.withLock { $0 } ?? "")")
        #expect(controller.isRunning, "the controller survives")
        if abuse != .unknownLoginKey {
            #expect(controller.logText.contains("127.0.0.1:\(badPort)"), "the bad input is logged with the peer's address")
        }
    }
}
