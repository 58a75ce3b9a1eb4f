/// The requests a connection has sent and not had answered yet, by sequence id. A link issues ids one
/// after another, so a ring indexed by the id's low bits finds a request with no hashing (the
/// dictionary it replaces hashed every id twice per request with SipHash: about 1.5% of a
/// controller's CPU per replicated write). When the slot of a new id still holds an older
/// request (more than the ring's size in flight, or one straggler), the ring doubles.
///
/// Inlinable, so the link's module specializes it for its `Value`: unspecialized, every slot
/// access went through the value's witness table (more than the hashing it replaced).
public struct PendingRequests<Value> {
    @usableFromInline var seqs: [UInt64]
    @usableFromInline var values: [Value?]
    @usableFromInline var mask: Int
    @usableFromInline var stored = 0
    @inlinable public var count: Int { stored }

    @inlinable public init(capacity: Int = 256) {
        var n = 1
        while n < capacity { n <<= 1 }
        seqs = Array(repeating: 0, count: n)
        values = Array(repeating: nil, count: n)
        mask = n - 1
    }

    @inlinable public var isEmpty: Bool { stored == 0 }

    /// Adds the request of id `seq` (ids are never 0 and never repeat while pending).
    @inlinable public mutating func insert(_ seq: UInt64, _ value: Value) {
        precondition(seq != 0, "sequence id 0 marks a free slot")
        while values[Int(truncatingIfNeeded: seq) & mask] != nil { grow() }
        let i = Int(truncatingIfNeeded: seq) & mask
        seqs[i] = seq
        values[i] = value
        stored += 1
    }

    /// Takes the request of id `seq` out, or nil when none is pending under that id.
    @inlinable public mutating func remove(_ seq: UInt64) -> Value? {
        let i = Int(truncatingIfNeeded: seq) & mask
        guard seqs[i] == seq, let v = values[i] else { return nil }
        values[i] = nil
        seqs[i] = 0
        stored -= 1
        return v
    }

    /// Every pending request, oldest id first; the table is left empty.
    @inlinable public mutating func removeAll() -> [Value] {
        var all: [(UInt64, Value)] = []
        all.reserveCapacity(stored)
        for i in values.indices {
            if let v = values[i] { all.append((seqs[i], v)) }
            values[i] = nil
            seqs[i] = 0
        }
        stored = 0
        return all.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Calls `body` with each pending request, in no particular order.
    @inlinable public func forEach(_ body: (Value) -> Void) {
        guard stored > 0 else { return }
        for v in values { if let v { body(v) } }
    }

    @usableFromInline mutating func grow() {
        let oldSeqs = seqs, oldValues = values
        let n = values.count * 2
        seqs = Array(repeating: 0, count: n)
        values = Array(repeating: nil, count: n)
        mask = n - 1
        for i in oldValues.indices {
            guard let v = oldValues[i] else { continue }
            let j = Int(truncatingIfNeeded: oldSeqs[i]) & mask
            seqs[j] = oldSeqs[i]
            values[j] = v
        }
    }
}
