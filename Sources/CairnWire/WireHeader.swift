import CCairn

/// What a frame asks for. A reply carries the request's opcode with `WireFlags.reply` set.
public enum WireOpcode: UInt8, Sendable, CaseIterable {
    /// Controller -> replica, first frame: `Hello` (JSON); reply: `HelloReply` (JSON).
    case hello = 1
    /// Read `extent` bytes at `offset`; the reply's payload is the data.
    case read = 2
    /// Write the payload at `offset` (`WireFlags.fua`: durable before the reply).
    case write = 3
    /// Make every completed write durable (data and dirty maps).
    case flush = 4
    /// Deallocate `extent` bytes at `offset`.
    case unmap = 5
    /// Reply: `ReplicaStatus` (JSON).
    case status = 6
    /// Persist a new epoch record and dirty-map changes: `MembershipUpdate` (JSON).
    case setMembership = 7
    /// Reply: the extents a dirty map marks (`ExtentList`) for the member named in the payload.
    case dirtyExtents = 8
    /// Reply: the allocated extents (`ExtentList`) in [offset, offset+extent): holes are skipped.
    case allocatedExtents = 9
    /// Forget the data and the epoch record: the replica is about to get a full copy.
    case wipe = 10
    /// Liveness probe; empty reply.
    case ping = 11
    /// Reply: the replica's write-intent map (`RegionBitmap`): the regions where a write may
    /// have reached it and not every other member.
    case intentMap = 12
    /// Payload: a `RegionBitmap` of regions the controller knows are the same on every healthy
    /// member (no write to them in flight): the replica unmarks them in its write-intent map.
    case settle = 13
    /// Controller -> replica, before the hello when the controller has the volume's secret:
    /// `AuthChallenge` (JSON); reply: `AuthResponse` (JSON), or `unauthorized` from a replica
    /// without a secret. See `ReplicaSecret`.
    case auth = 14
    /// Grow the volume to `extent` bytes (never shrink): data, maps and metadata, durable before
    /// the reply; the replica then serves the new size.
    case resize = 15
    /// Freeze the head as a snapshot (`SnapshotCreate`, JSON) and write to a new head on it;
    /// durable before the reply. Served after every request before it.
    case snapshot = 16
    /// Reply: `SnapshotList` (JSON).
    case snapshots = 17
    /// Delete a snapshot (`SnapshotRef`): marked at once, merged into its children in the
    /// background, paced; the list shows it `deleting` until it is gone.
    case deleteSnapshot = 18
    /// Drop the head and start a new one on the snapshot (`SnapshotRef`): the volume reads as it.
    case revert = 19
    /// A wiped replica about to be rebuilt takes the source's snapshots (`SnapshotList`) as empty
    /// layers under its head; the rebuild then fills them (writes with a `LayerSelector`).
    case installSnapshots = 20
    /// `SnapshotViewRequest` -> `SnapshotView`: a handle to read what a snapshot holds (its
    /// layer over its parents'), for a clone or a backup.
    case openSnapshotView = 21
}

/// Frame flags.
public struct WireFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let reply = WireFlags(rawValue: 1 << 0)
    /// Write: durable (RWF_DSYNC) before the reply.
    public static let fua = WireFlags(rawValue: 1 << 1)
    /// Read or write made by a rebuild (counted apart; never tracked in dirty maps on the target).
    public static let rebuild = WireFlags(rawValue: 1 << 2)
}

/// The outcome a reply carries in `status`.
public enum WireStatus: UInt32, Sendable, Error {
    case ok = 0
    /// EIO or another medium error on the replica.
    case ioError = 1
    /// ENOSPC/EDQUOT on the replica.
    case noSpace = 2
    /// The request's epoch is older than the replica's: a newer controller owns it (fencing).
    case staleEpoch = 3
    /// A malformed request (bad range, bad payload, unknown opcode).
    case badRequest = 4
    /// The replica belongs to another volume or has another size.
    case wrongVolume = 5
    /// The replica is shutting down.
    case unavailable = 6
    /// The handshake did not prove the volume's secret (or offered one to a replica that has none).
    case unauthorized = 7
    /// The request conflicts with the replica's state: a snapshot name in use, a snapshot being
    /// merged away, a revert while a merge writes into the head.
    case conflict = 8
    /// No such snapshot.
    case notFound = 9
}

/// The fixed 56-byte frame header, little-endian, protected by its own CRC32C; the payload has
/// its own CRC32C so a torn or corrupted frame is caught before it touches data.
///
///     0 magic u32 | 4 version u8 | 5 opcode u8 | 6 flags u16 | 8 seq u64 | 16 epoch u64
///     24 offset u64 | 32 extent u64 | 40 payloadLength u32 | 44 status u32
///     48 payloadCRC u32 | 52 headerCRC u32
public struct WireHeader: Sendable, Equatable {
    public static let size = 56
    public static let magic: UInt32 = 0x5752_4E43  // "CNRW" on the wire
    public static let version: UInt8 = 4
    /// The largest payload either side accepts: a 16 MiB data transfer, or control JSON.
    public static let maxPayload = 16 << 20

    public var opcode: WireOpcode
    public var flags: WireFlags
    public var seq: UInt64
    public var epoch: UInt64
    public var offset: UInt64
    public var extent: UInt64
    public var payloadLength: UInt32
    public var status: UInt32
    public var payloadCRC: UInt32

    public init(opcode: WireOpcode, flags: WireFlags = [], seq: UInt64, epoch: UInt64 = 0, offset: UInt64 = 0,
                extent: UInt64 = 0, payloadLength: UInt32 = 0, status: UInt32 = 0, payloadCRC: UInt32 = 0) {
        self.opcode = opcode
        self.flags = flags
        self.seq = seq
        self.epoch = epoch
        self.offset = offset
        self.extent = extent
        self.payloadLength = payloadLength
        self.status = status
        self.payloadCRC = payloadCRC
    }

    public var isReply: Bool { flags.contains(.reply) }
    public var wireStatus: WireStatus { WireStatus(rawValue: status) ?? .badRequest }

    /// The reply header for this request.
    public func reply(_ status: WireStatus, payloadLength: Int = 0, payloadCRC: UInt32 = 0) -> WireHeader {
        WireHeader(opcode: opcode, flags: [.reply], seq: seq, epoch: epoch, offset: offset, extent: extent,
                   payloadLength: UInt32(payloadLength), status: status.rawValue, payloadCRC: payloadCRC)
    }

    /// Writes the 56 bytes at `p`.
    public func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: Self.version, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: opcode.rawValue, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: epoch.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: offset.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: extent.littleEndian, toByteOffset: 32, as: UInt64.self)
        p.storeBytes(of: payloadLength.littleEndian, toByteOffset: 40, as: UInt32.self)
        p.storeBytes(of: status.littleEndian, toByteOffset: 44, as: UInt32.self)
        p.storeBytes(of: payloadCRC.littleEndian, toByteOffset: 48, as: UInt32.self)
        let crc = ccairn_crc32c(0, p, 52)
        p.storeBytes(of: crc.littleEndian, toByteOffset: 52, as: UInt32.self)
    }

    /// Parses and checks 56 bytes at `p`: magic, version, header CRC, opcode, payload bound.
    public static func decode(_ p: UnsafeRawPointer) throws(WireError) -> WireHeader {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard u32(0) == magic else { throw .badMagic(u32(0)) }
        let crc = ccairn_crc32c(0, p, 52)
        guard crc == u32(52) else { throw .headerChecksum }
        let v = p.load(fromByteOffset: 4, as: UInt8.self)
        guard v == version else { throw .unsupportedVersion(v) }
        let rawOp = p.load(fromByteOffset: 5, as: UInt8.self)
        guard let op = WireOpcode(rawValue: rawOp) else { throw .unknownOpcode(rawOp) }
        let len = u32(40)
        guard len <= UInt32(maxPayload) else { throw .payloadTooLarge(Int(len)) }
        return WireHeader(opcode: op,
                          flags: WireFlags(rawValue: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))),
                          seq: u64(8), epoch: u64(16), offset: u64(24), extent: u64(32),
                          payloadLength: len, status: u32(44), payloadCRC: u32(48))
    }
}

/// Why a frame was refused. Any of these ends the connection: the stream can no longer be trusted.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case badMagic(UInt32)
    case headerChecksum
    case payloadChecksum
    case unsupportedVersion(UInt8)
    case unknownOpcode(UInt8)
    case payloadTooLarge(Int)
    case badMessage(String)
    case closed

    public var description: String {
        switch self {
        case .badMagic(let m): return "bad frame magic 0x\(String(m, radix: 16))"
        case .headerChecksum: return "frame header checksum mismatch"
        case .payloadChecksum: return "frame payload checksum mismatch"
        case .unsupportedVersion(let v): return "unsupported protocol version \(v)"
        case .unknownOpcode(let o): return "unknown opcode \(o)"
        case .payloadTooLarge(let n): return "payload of \(n) bytes is over the limit"
        case .badMessage(let why): return "bad message: \(why)"
        case .closed: return "connection closed"
        }
    }
}

/// CRC32C of a payload (0 for none).
@inline(__always)
public func wireChecksum(_ p: UnsafeRawPointer?, _ n: Int) -> UInt32 {
    guard n > 0, let p else { return 0 }
    return ccairn_crc32c(0, p, n)
}
