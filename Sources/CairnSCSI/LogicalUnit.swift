import CairnBlock
import CairnIO

/// How a logical unit presents itself beyond its store's size and block size. The defaults are
/// a fixed, writable medium with one logical block per physical block.
public struct LogicalUnitOptions: Sendable, Equatable {
    /// RMB=1 in standard INQUIRY, with the removable-medium model of SBC-3: START STOP UNIT with
    /// LOEJ ejects and loads the medium, PREVENT ALLOW MEDIUM REMOVAL keeps it in, and while it is
    /// out media-access commands get NOT READY / MEDIUM NOT PRESENT.
    public var removable = false
    /// The medium is write-protected: every command that would change it gets DATA PROTECT /
    /// WRITE PROTECTED, and MODE SENSE reports WP=1.
    public var readOnly = false
    /// Bytes per physical block, reported as LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT in READ
    /// CAPACITY(16); nil means the logical block size (exponent 0). Must be a power-of-two
    /// multiple of the logical block size, at most 2^15 logical blocks (see `validate`).
    public var physicalBlockSize: Int?

    public init(removable: Bool = false, readOnly: Bool = false, physicalBlockSize: Int? = nil) {
        self.removable = removable
        self.readOnly = readOnly
        self.physicalBlockSize = physicalBlockSize
    }

    /// log2(physical block size / logical block size), or nil when the physical block size is
    /// not a power-of-two multiple of `logicalBlockSize` that the 4-bit exponent can express.
    public static func physicalBlockExponent(_ physical: Int, logicalBlockSize: Int) -> UInt8? {
        guard logicalBlockSize > 0, physical >= logicalBlockSize, physical % logicalBlockSize == 0 else { return nil }
        let ratio = physical / logicalBlockSize
        guard ratio & (ratio - 1) == 0 else { return nil }
        let e = ratio.trailingZeroBitCount
        return e <= 15 ? UInt8(e) : nil
    }

    /// Why these options cannot serve a unit of `logicalBlockSize`-byte blocks, or nil if they can.
    public func validate(logicalBlockSize: Int) -> String? {
        if let p = physicalBlockSize, LogicalUnitOptions.physicalBlockExponent(p, logicalBlockSize: logicalBlockSize) == nil {
            return "physical block size \(p) is not a power-of-two multiple (1 to 32768 times) of the logical block size \(logicalBlockSize)"
        }
        return nil
    }
}

/// One logical unit and the SPC state that belongs to it. Owned by the `SCSITarget` actor and
/// touched only on it (it is deliberately not Sendable).
final class LogicalUnit {
    let lun: UInt64
    let store: any BlockStore
    let blockSize: Int
    /// The store's size when the unit was made, then each size it grew to (`capacityChanged`).
    var blockCount: UInt64
    /// RMB: the medium can be ejected and loaded (START STOP UNIT LOEJ) and its removal prevented.
    let removable: Bool
    /// Write-protected medium (`--read-only`).
    let readOnly: Bool
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (READ CAPACITY(16)).
    let physicalBlockExponent: UInt8
    var logicalBlocksPerPhysicalBlock: Int { 1 << Int(physicalBlockExponent) }
    /// Largest READ/WRITE transfer, in blocks (block limits VPD).
    let maxTransferBlocks: Int
    /// Stable identifiers derived from the volume name (and the LUN).
    let naa: (UInt64, UInt64)
    let serial: String

    var mode = ModeParameters()
    var locks = RangeLock()
    var pr = PersistentReservationState()
    /// Holder of a RESERVE(6)/(10) reservation.
    var reservedBy: ITNexus?
    var unitAttentions = UnitAttentions()
    /// SANITIZE operations running (commands are refused meanwhile).
    var sanitizing = 0
    /// Removable medium: loaded (true from power on) or ejected by START STOP UNIT.
    var mediumPresent = true
    /// I_T nexuses whose PREVENT ALLOW MEDIUM REMOVAL has PREVENT=01b in effect. Removal is
    /// prevented while any nexus holds one (SBC-3); each ends with that nexus's ALLOW or its
    /// loss; a logical unit reset (and so a target reset, warm or cold) ends them all.
    var preventers: Set<ITNexus> = []

    /// Commands that would change the medium are refused: `--read-only`, or SWP set in the
    /// control mode page.
    @inline(__always)
    var writeProtected: Bool { readOnly || mode.swp }

    static let maxTransferBytes = 32 << 20
    static let maxWriteSameBlocks: UInt64 = 0x40_0000
    static let maxUnmapBlocks: UInt64 = 0x10_0000  // libiscsi finds more than 1 Mi blocks "insane"
    static let maxUnmapDescriptors = 256
    static let maxCompareAndWriteBlocks = 255
    /// GET LBA STATUS returns at most this many descriptors.
    static let maxLBAStatusDescriptors = 512

    init(lun: UInt64, store: any BlockStore, identity: LogicalUnitIdentity, options: LogicalUnitOptions = LogicalUnitOptions()) {
        self.lun = lun
        self.store = store
        self.blockSize = store.blockSize
        self.blockCount = store.blockCount
        self.removable = options.removable
        self.readOnly = options.readOnly
        if let p = options.physicalBlockSize {
            guard let e = LogicalUnitOptions.physicalBlockExponent(p, logicalBlockSize: store.blockSize) else {
                preconditionFailure(options.validate(logicalBlockSize: store.blockSize) ?? "bad physical block size")
            }
            self.physicalBlockExponent = e
        } else {
            self.physicalBlockExponent = 0
        }
        self.maxTransferBlocks = max(1, LogicalUnit.maxTransferBytes / max(store.blockSize, 1))
        let h1 = fnv1a(identity.volumeName, seed: 0xcbf2_9ce4_8422_2325 ^ lun)
        let h2 = fnv1a(identity.volumeName, seed: 0x9e37_79b9_7f4a_7c15 &+ lun)
        // NAA 6 (IEEE registered extended): 4-bit NAA, 24-bit company id, 36 + 64 bits vendor specific.
        let companyID: UInt64 = 0x0C_A1_4E
        naa = ((6 << 60) | (companyID << 36) | (h1 >> 28), h2)
        serial = hex(h1, digits: 16)
    }

    /// True if `lba` + `count` blocks lie inside the unit (no overflow).
    @inline(__always)
    func inRange(_ lba: UInt64, _ count: UInt64) -> Bool {
        lba <= blockCount && count <= blockCount &- lba
    }

    /// Writes go through with FUA when the write cache is off (WCE=0).
    @inline(__always)
    func fua(_ requested: Bool) -> Bool { requested || !mode.wce }
}

func fnv1a(_ s: String, seed: UInt64) -> UInt64 {
    var h = seed
    for b in s.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    // Final avalanche so similar names give unrelated identifiers.
    h ^= h >> 33; h = h &* 0xff51_afd7_ed55_8ccd; h ^= h >> 33
    return h
}

func hex(_ v: UInt64, digits: Int) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return s.leftPadded(to: digits)
}

/// Mode page settings a client can change (MODE SELECT).
struct ModeParameters: Equatable {
    /// Caching page: write cache enable.
    var wce = true
    /// Caching page: read cache disable.
    var rcd = false
    /// Control page: descriptor-format sense.
    var dSense = false
    /// Informational exceptions page: DEXCPT and MRIE.
    var dexcpt = true
    var mrie: UInt8 = 0
    /// Control page: software write protect.
    var swp = false
}

/// Unit attention conditions queued per I_T nexus, oldest first.
struct UnitAttentions {
    struct Condition: Equatable { var asc: UInt8; var ascq: UInt8 }
    private var pending: [ITNexus: [Condition]] = [:]
    /// Nexuses that have sent a command to this unit since their login (UAs go to them).
    private(set) var known: Set<ITNexus> = []
    private var last: ITNexus?
    /// Fast check for the hot path: no dictionary lookup while nothing is pending.
    private(set) var count = 0

    /// Remembers the nexus; cheap when it is the same as the previous command's.
    mutating func see(_ nexus: ITNexus) {
        if last == nexus { return }
        known.insert(nexus)
        last = nexus
    }

    mutating func forget(_ nexus: ITNexus) {
        known.remove(nexus)
        if last == nexus { last = nil }
        if let q = pending.removeValue(forKey: nexus) { count -= q.count }
    }

    mutating func raise(_ asc: UInt8, _ ascq: UInt8, for nexus: ITNexus) {
        let c = Condition(asc: asc, ascq: ascq)
        var q = pending[nexus] ?? []
        if q.contains(c) { return }
        // A bounded queue: the oldest conditions matter most.
        if q.count >= 16 { return }
        q.append(c)
        pending[nexus] = q
        count += 1
    }

    /// Raises for every known nexus, except `except`.
    mutating func raiseAll(_ asc: UInt8, _ ascq: UInt8, except: ITNexus? = nil) {
        for n in known where n != except { raise(asc, ascq, for: n) }
    }

    /// Takes the oldest pending condition of `nexus`.
    mutating func take(for nexus: ITNexus) -> Condition? {
        guard count > 0, var q = pending[nexus], !q.isEmpty else { return nil }
        let c = q.removeFirst()
        count -= 1
        pending[nexus] = q.isEmpty ? nil : q
        return c
    }

    func peek(for nexus: ITNexus) -> Condition? {
        guard count > 0 else { return nil }
        return pending[nexus]?.first
    }
}
