@testable import CairnIO
import CCairn
import Testing

actor LoopActor {
    let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    init(loop: EventLoop) { self.loop = loop }
    func nops(_ n: Int) async {
        for _ in 0..<n { _ = await loop.nop() }
    }
    var calls = 0
    func bump() async { calls += 1 }
    func call(_ peer: LoopActor, _ n: Int) async {
        for _ in 0..<n { await peer.bump() }
    }
}

/// Runs `body` with a started loop named `name`, and stops the loop after it.
func withLoop<T>(_ name: String, _ body: (EventLoop) async throws -> T) async throws -> T {
    let loop = try EventLoop(name: name)
    loop.start()
    defer { loop.stopAndJoin() }
    return try await body(loop)
}

/// The data path's speed rests on never touching Swift's global pool per I/O. These count the
/// jobs the runtime hands to the global executor from the loop's thread (a count, not a timing).
@Suite(.serialized) struct NoGlobalHopTests {
    static let ops = 2000

    init() { ccairn_count_global_enqueues() }

    @Test func pinnedActorInALoopTaskNeverTouchesTheGlobalPool() async throws {
        try await withLoop("nohop") { loop in
            let a = LoopActor(loop: loop)
            let delta = await loop.spawn { () -> UInt64 in
                let before = ccairn_global_enqueues_from_loop(loop.id)
                await a.nops(Self.ops)
                return ccairn_global_enqueues_from_loop(loop.id) - before
            }.value
            #expect(delta == 0, "\(delta) global enqueues for \(Self.ops) I/Os")
        }
    }

    @Test func aCallBetweenLoopActorsRunsInlineWithoutAnEnqueue() async throws {
        // The connection, target and volume (and a replica's session and store) are separate
        // actors on one loop: a call from one to the other must not cost a trip through the
        // loop's queue (it did, two per call, while serial jobs ran without the task executor).
        try await withLoop("inline") { loop in
            let a = LoopActor(loop: loop)
            let b = LoopActor(loop: loop)
            let (delta, calls) = await loop.spawn { () -> (UInt64, Int) in
                await a.call(b, 1)  // both actors reached once before counting
                let before = loop.jobsEnqueuedInLoop
                await a.call(b, Self.ops)
                return (loop.jobsEnqueuedInLoop - before, await b.calls)
            }.value
            #expect(calls == Self.ops + 1)
            #expect(delta < 10, "\(delta) loop enqueues for \(Self.ops) calls between two loop actors")
        }
    }

    @Test func anAwaitedIOResumesTheLoopActorWithOneEnqueue() async throws {
        // The completion resumes the continuation (one enqueue); the actor's code then goes on
        // in that same job, with no second trip to get from the generic executor back onto it.
        try await withLoop("resume") { loop in
            let a = LoopActor(loop: loop)
            let delta = await loop.spawn { () -> UInt64 in
                await a.nops(1)
                let before = loop.jobsEnqueuedInLoop
                await a.nops(Self.ops)
                return loop.jobsEnqueuedInLoop - before
            }.value
            #expect(delta <= UInt64(Self.ops) + 10, "\(delta) loop enqueues for \(Self.ops) I/Os in a loop actor")
        }
    }

    @Test func withoutTheLoopPreferenceEveryResumeGoesThroughTheGlobalPool() async throws {
        // Documents the pitfall the rule above exists for: actor pinning alone is not enough.
        try await withLoop("hop") { loop in
            let a = LoopActor(loop: loop)
            let before = ccairn_global_enqueues_from_loop(loop.id)
            await a.nops(Self.ops)
            let delta = ccairn_global_enqueues_from_loop(loop.id) - before
            #expect(delta >= UInt64(Self.ops), "\(delta) global enqueues for \(Self.ops) I/Os")
        }
    }
}
