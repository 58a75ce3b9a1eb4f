import CairnIO
import Crypto

/// The volume's shared secret, which authenticates both ends of a replica link: a replica serves
/// only a controller that proves it holds the secret, and a controller uses only a replica that
/// does. Each side sends a fresh random nonce and proves itself with HMAC-SHA256 over both
/// nonces and its role, so a captured handshake replayed later fails (the other side's nonce is
/// new) and one side's proof cannot be reflected back as the other's (the role differs).
///
///     controller -> replica   auth   AuthChallenge { nonce: nC }
///     replica -> controller   reply  AuthResponse { nonce: nR, proof: HMAC(k, "replica" | nC | nR) }
///     controller -> replica   hello  Hello { ..., proof: HMAC(k, "controller" | nC | nR) }
///
/// The frames after the handshake are not authenticated one by one: the link is trusted as one
/// TCP connection (no TLS).
public struct ReplicaSecret: Sendable {
    public enum Role: String, Sendable { case controller, replica }

    public static let nonceBytes = 32
    /// The raw bytes, not a `SymmetricKey` (not Sendable): a key is made per handshake.
    private let secret: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: secret) }

    /// `bytes` is the secret as read from its file (at least one byte).
    public init(_ bytes: [UInt8]) {
        precondition(!bytes.isEmpty, "an empty replica secret")
        secret = bytes
    }

    /// What `role` sends to prove it holds the secret in the handshake of these two nonces.
    public func proof(_ role: Role, controllerNonce: [UInt8], replicaNonce: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Self.message(role, controllerNonce, replicaNonce), using: key))
    }

    /// Whether `proof` is `role`'s proof for these nonces; compared in constant time.
    public func verify(_ proof: [UInt8], _ role: Role, controllerNonce: [UInt8], replicaNonce: [UInt8]) -> Bool {
        guard controllerNonce.count == Self.nonceBytes, replicaNonce.count == Self.nonceBytes else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: Self.message(role, controllerNonce, replicaNonce),
                                                      using: key)
    }

    public static func newNonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<nonceBytes).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    private static func message(_ role: Role, _ controllerNonce: [UInt8], _ replicaNonce: [UInt8]) -> [UInt8] {
        Array("cairn-replica-auth/\(role.rawValue)\0".utf8) + controllerNonce + replicaNonce
    }
}

/// Controller -> replica (`WireOpcode.auth`), before the hello, when the controller has a secret.
public struct AuthChallenge: Codable, Equatable, Sendable {
    /// The controller's nonce, hex.
    public var nonce: String

    public init(nonce: [UInt8]) { self.nonce = Hex.encode(nonce) }
}

/// The replica's answer to `AuthChallenge`: its nonce, and its proof over both.
public struct AuthResponse: Codable, Equatable, Sendable {
    public var nonce: String
    public var proof: String

    public init(nonce: [UInt8], proof: [UInt8]) {
        self.nonce = Hex.encode(nonce)
        self.proof = Hex.encode(proof)
    }
}
