// End-to-end tests of `cairn controller` with real initiators: libiscsi's tools,
// qemu-img, fio's libiscsi engine and libiscsi's C API.
//
// NEEDS THE CONTROLLER: these tests start the built `cairn controller` binary
// (.build/debug/cairn or $CAIRN_BIN) and fail until it serves iSCSI.  Each test
// starts its own controller on a free 127.0.0.1 port with a scratch file and
// stops it by pid; every external tool runs under a timeout.

#if canImport(CLibiSCSI)
import CLibiSCSI
#endif
import Foundation
import Testing

@Suite("Integration: cairn controller with real initiators (needs a working `cairn controller`)", .serialized)
struct ControllerIntegrationTests {
    static let mib = 1 << 20

    @Test("iscsi-ls -s discovers the target", .timeLimit(.minutes(1)))
    func discovery() throws {
        let cairn = try CairnController(name: "discovery")
        defer { cairn.stop() }
        let r = try Tools.run("iscsi-ls", ["-s", "iscsi://127.0.0.1:\(cairn.port)"], timeout: 20)
        #expect(r.succeeded, "\(r)")
        #expect(r.output.contains("Target:\(cairn.iqn)"), "\(r)")
        #expect(r.output.contains("127.0.0.1:\(cairn.port)"), "\(r)")
        #expect(r.output.contains("Lun:0"), "\(r)")
    }

    @Test("iscsi-inq: standard inquiry says vendor CAIRN, direct-access device", .timeLimit(.minutes(1)))
    func inquiry() throws {
        let cairn = try CairnController(name: "inquiry")
        defer { cairn.stop() }
        let r = try Tools.run("iscsi-inq", [cairn.url], timeout: 20)
        #expect(r.succeeded, "\(r)")
        let vendor = r.output.split(separator: "\n").first { $0.hasPrefix("Vendor:") }
        #expect(vendor?.dropFirst("Vendor:".count).trimmingCharacters(in: .whitespaces) == "CAIRN", "\(r)")
        #expect(r.output.contains("Peripheral Device Type:DIRECT_ACCESS"), "\(r)")
    }

    @Test("qemu-img writes a 64 MiB random image and reads it back byte-identical", .timeLimit(.minutes(3)))
    func qemuImgRoundTrip() throws {
        let cairn = try CairnController(name: "qemu", size: "64MiB")
        defer { cairn.stop() }
        let dir = try Checkout.temporaryDirectory("cairn-qemu")
        defer { try? FileManager.default.removeItem(at: dir) }
        let random = dir.appendingPathComponent("random.img"), back = dir.appendingPathComponent("back.img")
        try writeRandomFile(random, count: 64 * Self.mib)

        let put = try Tools.run("qemu-img", ["convert", "-O", "raw", random.path, cairn.url], timeout: 120)
        try #require(put.succeeded, "\(put)")
        let get = try Tools.run("qemu-img", ["convert", "-O", "raw", cairn.url, back.path], timeout: 120)
        try #require(get.succeeded, "\(get)")
        let diff = try firstDifference(random, back)
        #expect(diff == nil, "the image read back differs from the one written, first at byte \(diff ?? -1)")

        // qemu-io reads through the same driver; its summary line says how much it read
        let io = try Tools.run("qemu-io", ["-f", "raw", "-c", "read 0 65536", cairn.url], timeout: 30)
        #expect(io.succeeded && io.output.contains("read 65536/65536 bytes"), "\(io)")
    }

    @Test("fio (libiscsi engine): 4k randwrite QD32 over the whole volume, verify=crc32c",
          .enabled(if: Tools.fioWithLibiscsi != nil,
                   "fio with the libiscsi engine is not built: run `make fio` (Perf/build-fio.sh) or set FIO"),
          .timeLimit(.minutes(4)))
    func fioVerify() throws {
        let fio = try #require(Tools.fioWithLibiscsi)
        let cairn = try CairnController(name: "fio", size: "64MiB")
        defer { cairn.stop() }
        // fio splits filename= on ':', so the URL's colons are escaped.
        let filename = cairn.url.replacingOccurrences(of: ":", with: "\\:")
        let r = try Tools.run(fio, [
            "--name=verify", "--ioengine=libiscsi", "--filename=\(filename)",
            "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=64m",
            "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--numjobs=1",
        ], timeout: 200)
        #expect(r.succeeded, "\(r)")
        #expect(!r.output.contains("verify: bad"), "\(r)")
        #expect(r.output.contains("err= 0"), "\(r)")
    }

    @Test("CHAP: no or wrong credentials are refused, the right ones log in (secret on the command line or in a file)",
          .timeLimit(.minutes(1)), arguments: [false, true])
    func chap(fromFile: Bool) throws {
        let user = "itest-initiator", secret = "itest-secret-0123"
        let dir = try Checkout.temporaryDirectory("cairn-itest-chapfile")
        defer { try? FileManager.default.removeItem(at: dir) }
        let secretArgs = fromFile ? ["--chap-secret-file", try writeSecretFile(dir, "chap", secret)] : ["--chap-secret", secret]
        let cairn = try CairnController(name: "chap", arguments: ["--chap-user", user] + secretArgs)
        defer { cairn.stop() }
        let none = try Tools.run("iscsi-inq", [cairn.url], environment: [
            "LIBISCSI_CHAP_USERNAME": nil, "LIBISCSI_CHAP_PASSWORD": nil,
        ], timeout: 20)
        #expect(!none.succeeded && !none.timedOut, "a login without credentials must fail: \(none)")
        let wrong = try Tools.run("iscsi-inq", [cairn.url], environment: [
            "LIBISCSI_CHAP_USERNAME": user, "LIBISCSI_CHAP_PASSWORD": "not-the-secret-01",
        ], timeout: 20)
        #expect(!wrong.succeeded && !wrong.timedOut, "a login with a wrong secret must fail: \(wrong)")
        let right = try Tools.run("iscsi-inq", [cairn.url], environment: [
            "LIBISCSI_CHAP_USERNAME": user, "LIBISCSI_CHAP_PASSWORD": secret,
        ], timeout: 20)
        #expect(right.succeeded, "a login with the right secret must succeed: \(right)")
    }

    #if canImport(CLibiSCSI)
    @Test("libiscsi C API: READ CAPACITY(16), WRITE(16) then READ(16) returns the data", .timeLimit(.minutes(1)))
    func libiscsiCAPI() throws {
        let cairn = try CairnController(name: "capi", size: "64MiB")
        defer { cairn.stop() }
        let lun = Int32(cairn.url.split(separator: "/").last ?? "") ?? 0
        let session = try LibiSCSISession(url: cairn.url, targetIQN: cairn.iqn, port: cairn.port, lun: lun)
        defer { session.close() }

        let (lastLBA, blockLength) = try session.readCapacity16()
        #expect(blockLength == 512)
        #expect(lastLBA + 1 == UInt64(64 * Self.mib / 512))

        var pattern = [UInt8](repeating: 0, count: 8 * 512)
        for i in pattern.indices { pattern[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        try session.write16(lba: 1000, pattern)
        let back = try session.read16(lba: 1000, blocks: 8)
        #expect(back == pattern)
    }
    #endif

    @Test("SIGTERM: the controller exits 0", .timeLimit(.minutes(1)))
    func sigterm() throws {
        let cairn = try CairnController(name: "sigterm")
        let r = try Tools.run("iscsi-inq", [cairn.url], timeout: 20)
        #expect(r.succeeded, "\(r)")
        #expect(cairn.stop(timeout: 15) == 0, "cairn's output:\n\(cairn.logText)")
    }
}

#if canImport(CLibiSCSI)
// CLibiSCSI is usable once Package.swift declares it and IntegrationTests depends on it:
//   .systemLibrary(name: "CLibiSCSI", path: "Sources/CLibiSCSI", providers: [.apt(["libiscsi-dev"])]),
//   .testTarget(name: "IntegrationTests", dependencies: ["CairnIO", "CLibiSCSI"], ...)

/// A libiscsi session driven through the synchronous C API (CLibiSCSI).
final class LibiSCSISession {
    private var context: OpaquePointer?

    init(url: String, targetIQN: String, port: UInt16, lun: Int32 = 0, timeoutSeconds: Int32 = 10) throws {
        guard let ctx = iscsi_create_context("iqn.2026-11.io.cairn:integration-tests") else {
            throw HarnessError("iscsi_create_context failed")
        }
        context = ctx
        iscsi_set_targetname(ctx, targetIQN)
        iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL)
        iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C)
        iscsi_set_timeout(ctx, timeoutSeconds)  // bounds every *_sync call
        self.lun = lun
        guard iscsi_full_connect_sync(ctx, "127.0.0.1:\(port)", lun) == 0 else {
            let message = String(cString: iscsi_get_error(ctx))
            close()
            throw HarnessError("login to \(url) failed: \(message)")
        }
    }

    let lun: Int32

    func close() {
        guard let ctx = context else { return }
        iscsi_logout_sync(ctx)
        iscsi_destroy_context(ctx)
        context = nil
    }

    deinit { close() }

    private func check(_ task: UnsafeMutablePointer<scsi_task>?, _ what: String) throws -> UnsafeMutablePointer<scsi_task> {
        guard let task else {
            throw HarnessError("\(what): no task (\(context.map { String(cString: iscsi_get_error($0)) } ?? "closed"))")
        }
        let status = task.pointee.status
        guard status == Int32(SCSI_STATUS_GOOD.rawValue) else {
            let sense = task.pointee.sense
            scsi_free_scsi_task(task)
            throw HarnessError("\(what): SCSI status \(status), sense key \(sense.key.rawValue), ascq 0x\(String(sense.ascq, radix: 16))")
        }
        return task
    }

    /// TEST UNIT READY: its status and, for CHECK CONDITION, the sense key and ASC/ASCQ (as
    /// libiscsi packs them: ASC << 8 | ASCQ).
    func testUnitReady() throws -> (status: Int32, senseKey: UInt32, ascq: Int) {
        guard let task = iscsi_testunitready_sync(context, lun) else {
            throw HarnessError("TEST UNIT READY: no task (\(context.map { String(cString: iscsi_get_error($0)) } ?? "closed"))")
        }
        defer { scsi_free_scsi_task(task) }
        return (task.pointee.status, task.pointee.sense.key.rawValue, Int(task.pointee.sense.ascq))
    }

    func readCapacity16() throws -> (lastLBA: UInt64, blockLength: UInt32) {
        let task = try check(iscsi_readcapacity16_sync(context, lun), "READ CAPACITY(16)")
        defer { scsi_free_scsi_task(task) }
        guard let rc = scsi_datain_unmarshall(task)?.assumingMemoryBound(to: scsi_readcapacity16.self) else {
            throw HarnessError("READ CAPACITY(16): cannot unmarshall the data")
        }
        return (rc.pointee.returned_lba, rc.pointee.block_length)
    }

    func write16(lba: UInt64, _ data: [UInt8], blockSize: Int32 = 512) throws {
        var copy = data
        let task = try copy.withUnsafeMutableBufferPointer { buf in
            try check(iscsi_write16_sync(context, lun, lba, buf.baseAddress, UInt32(buf.count), blockSize, 0, 0, 0, 0, 0),
                      "WRITE(16)")
        }
        scsi_free_scsi_task(task)
    }

    func read16(lba: UInt64, blocks: Int, blockSize: Int32 = 512) throws -> [UInt8] {
        let length = UInt32(blocks) * UInt32(blockSize)
        let task = try check(iscsi_read16_sync(context, lun, lba, length, blockSize, 0, 0, 0, 0, 0), "READ(16)")
        defer { scsi_free_scsi_task(task) }
        let d = task.pointee.datain
        guard let p = d.data, d.size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: Int(d.size)))
    }
}
#endif
