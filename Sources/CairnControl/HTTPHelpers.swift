import CairnClient
import Foundation
@_implementationOnly import Hummingbird

/// Answers of the apiserver: JSON bodies, and RFC 9457 problem documents for every error.
enum Answer {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        guard let data = try? WireJSON.encoder().encode(value) else {
            return problem(.internalServerError, "internal", "could not encode the answer")
        }
        var body = ByteBuffer()
        body.writeBytes(data)
        body.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
    }

    static func text(_ s: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    /// A problem document; `type` is the error's stable slug under https://cairn.io/problems/.
    static func problem(_ status: HTTPResponse.Status, _ type: String, _ detail: String) -> Response {
        let p = Problem(type: "https://cairn.io/problems/\(type)", title: status.reasonPhrase, status: status.code,
                        detail: detail)
        var r = json(p, status: status)
        r.headers[.contentType] = "application/problem+json"
        return r
    }
}

/// A failed request: thrown by the validation helpers, turned into its problem document by the
/// route wrapper (`APIRoutes.handle`).
struct APIFailure: Error {
    var status: HTTPResponse.Status
    var type: String
    var detail: String

    init(_ status: HTTPResponse.Status, _ type: String, _ detail: String) {
        self.status = status
        self.type = type
        self.detail = detail
    }

    var response: Response { Answer.problem(status, type, detail) }

    static func notFound(_ what: String) -> APIFailure { APIFailure(.notFound, "not-found", what) }
    static func invalid(_ type: String, _ detail: String) -> APIFailure { APIFailure(.unprocessableContent, type, detail) }
}

/// Request bodies: JSON objects of at most `maxBody` bytes, with no field the resource lacks,
/// decoded into the request's type.
enum Body {
    static let maxBody = 1 << 20

    /// `nested` names the fields of objects inside (e.g. "qos"), checked the same way.
    static func decode<T: Decodable>(_ request: Request, as: T.Type, fields: Set<String>,
                                     nested: [String: Set<String>] = [:]) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxBody) } catch {
            throw APIFailure(.contentTooLarge, "body-too-large", "the body is larger than \(maxBody) bytes")
        }
        let data = Data(buffer.readableBytesView)
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw APIFailure(.badRequest, "bad-body", "the body must be a JSON object")
        }
        var unknown = Set(object.keys).subtracting(fields).sorted()
        for (key, inner) in nested {
            if let o = object[key] as? [String: Any] {
                unknown += Set(o.keys).subtracting(inner).sorted().map { "\(key).\($0)" }
            }
        }
        guard unknown.isEmpty else {
            throw APIFailure(.badRequest, "unknown-field", "unknown field(s): \(unknown.joined(separator: ", "))")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw APIFailure(.badRequest, "bad-body", describe(error))
        }
    }

    /// A decoding error in a sentence: which field, and what was wrong with it.
    static func describe(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.isEmpty ? "the body" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error as? DecodingError {
        case .typeMismatch(let type, let c): return "\(path(c.codingPath)): expected \(type)"
        case .valueNotFound(let type, let c): return "\(path(c.codingPath)): expected \(type), got null"
        case .keyNotFound(let key, let c): return "\(path(c.codingPath + [key])) is required"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        default: return "the body does not fit the resource: \(error)"
        }
    }
}

/// Names of volumes and pools: DNS-1123 labels, as Kubernetes names them.
enum Names {
    static func isDNSLabel(_ s: String) -> Bool { DNSLabel.isValid(s) }

    static func check(_ s: String, what: String) throws {
        guard isDNSLabel(s) else {
            throw APIFailure.invalid("invalid-name", "\(what) \"\(s.prefix(80))\" is not a DNS-1123 label (lower-case letters, digits and '-', 1-63 characters, a letter or digit at each end)")
        }
    }

    /// Label keys and values (pool labels and volume selectors): 1-63 characters of [A-Za-z0-9._-]
    /// (a key may have one DNS prefix and '/').
    static func checkLabels(_ labels: [String: String], what: String) throws {
        func ok(_ s: String, allowEmpty: Bool, allowSlash: Bool) -> Bool {
            if s.isEmpty { return allowEmpty }
            guard s.utf8.count <= (allowSlash ? 253 : 63) else { return false }
            return s.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)
                    || c == 0x2e || c == 0x5f || c == 0x2d || (allowSlash && c == 0x2f)
            }
        }
        guard labels.count <= 64 else { throw APIFailure.invalid("invalid-labels", "\(what): at most 64 labels") }
        for (k, v) in labels {
            guard ok(k, allowEmpty: false, allowSlash: true), ok(v, allowEmpty: true, allowSlash: false) else {
                throw APIFailure.invalid("invalid-labels", "\(what): \"\(k.prefix(80))\": \"\(v.prefix(80))\" is not a valid label")
            }
        }
    }
}
