import Synchronization

/// What a benchmark's setup made, handed to its closure and then to its teardown (the tool's
/// setup result reaches the closure only).
public final class Fixture<State: Sendable>: Sendable {
    private let state = Mutex<State?>(nil)

    public init() {}

    public func set(_ s: State) { state.withLock { $0 = s } }

    /// The state setup made; only called between setup and teardown.
    public var value: State { state.withLock { $0! } }

    public func take() -> State? { state.withLock { s in defer { s = nil }; return s } }
}
