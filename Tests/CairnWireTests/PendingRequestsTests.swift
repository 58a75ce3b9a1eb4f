import CairnWire
import Testing

@Suite struct PendingRequestsTests {
    /// Replies come back in any order; each finds its own request, once.
    @Test func repliesInAnyOrderFindTheirRequest() {
        var p = PendingRequests<String>(capacity: 8)
        for seq in UInt64(1)...6 { p.insert(seq, "r\(seq)") }
        #expect(p.count == 6)
        #expect(p.remove(4) == "r4")
        #expect(p.remove(4) == nil)
        #expect(p.remove(1) == "r1")
        #expect(p.remove(99) == nil)
        #expect(p.count == 4)
        #expect(p.removeAll() == ["r2", "r3", "r5", "r6"])
        #expect(p.isEmpty)
    }

    /// More requests in flight than the ring holds, and a straggler that stays while ids wrap
    /// past its slot: the ring grows and loses none of them.
    @Test func growsInsteadOfOverwriting() {
        var p = PendingRequests<UInt64>(capacity: 4)
        p.insert(1, 1)  // the straggler
        for seq in UInt64(2)...40 {
            p.insert(seq, seq)
            if seq >= 4 { #expect(p.remove(seq - 2) == seq - 2) }  // the others are answered
        }
        #expect(p.remove(1) == 1)
        #expect(p.remove(40) == 40)
        #expect(p.remove(39) == 39)
        #expect(p.isEmpty)
        for seq in UInt64(41)...140 { p.insert(seq, seq) }
        var seen: [UInt64] = []
        p.forEach { seen.append($0) }
        #expect(seen.sorted() == Array(41...140))
        #expect(p.removeAll() == Array(41...140))
    }
}
