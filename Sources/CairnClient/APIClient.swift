import Foundation
import Logging
// AsyncHTTPClient and NIO stay out of this module's public interface (see CairnAPI's HTTPServer.swift
// for why: NIO's swift-system C module and CCairn's liburing headers cannot be loaded in one
// compilation, and the `cairn` executable loads CCairn).
@_implementationOnly import AsyncHTTPClient
@_implementationOnly import NIOCore
@_implementationOnly import NIOHTTP1

/// An HTTP answer: status, content type and body.
public struct HTTPAnswer: Sendable {
    public var status: Int
    public var contentType: String?
    public var body: Data
    public var headers: [(String, String)]

    /// The body as a problem document, when it is one.
    public var problem: Problem? {
        guard status >= 400 else { return nil }
        return try? JSONDecoder().decode(Problem.self, from: body)
    }
}

/// What went wrong talking to a server: it could not be reached, or it answered with an error.
public enum ClientError: Error, CustomStringConvertible {
    case unreachable(String, String)
    case problem(Problem)
    case unexpected(Int, String)
    case undecodable(String)

    public var description: String {
        switch self {
        case .unreachable(let url, let why): return "cannot reach \(url): \(why)"
        case .problem(let p): return "\(p.title) (\(p.status)): \(p.detail) [\(p.type)]"
        case .unexpected(let status, let body): return "unexpected answer \(status): \(body)"
        case .undecodable(let why): return "could not read the answer: \(why)"
        }
    }
}

/// A small HTTP/1.1 client (AsyncHTTPClient) for JSON APIs: the CLI's link to the apiserver, and
/// the apiserver's to each volume's controller. One shared connection pool per instance.
public final class JSONHTTPClient: Sendable {
    // An `HTTPClient` (kept as `any Sendable` so no NIO type is in this public class's layout).
    private let client: any Sendable
    public let baseURL: String
    private let token: String?
    private let timeoutSeconds: Int64

    /// `baseURL` like `http://127.0.0.1:7400`; `token` is sent as `Authorization: Bearer ...`.
    public init(baseURL: String, token: String? = nil, timeoutSeconds: Int64 = 30) {
        var config = HTTPClient.Configuration()
        config.timeout = .init(connect: .seconds(5), read: .seconds(timeoutSeconds))
        config.connectionPool = .init(idleTimeout: .seconds(30))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.timeoutSeconds = timeoutSeconds
    }

    private var http: HTTPClient { client as! HTTPClient }

    /// Ends the connection pool; call once done.
    public func shutdown() async {
        try? await http.shutdown()
    }

    /// Sends `method path` with an optional JSON body; returns the whole answer (at most 64 MiB).
    public func send(_ method: String, _ path: String, body: Data? = nil,
                     timeoutSeconds: Int64? = nil, headers: [(String, String)] = []) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.headers.add(name: "Accept", value: "application/json, application/problem+json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await http.execute(request, timeout: .seconds(timeoutSeconds ?? self.timeoutSeconds))
            let buffer = try await response.body.collect(upTo: 64 << 20)
            let data = Data(buffer.readableBytesView)
            return HTTPAnswer(status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
                              body: data, headers: response.headers.map { ($0.name, $0.value) })
        } catch {
            throw ClientError.unreachable(baseURL + path, "\(error)")
        }
    }

    /// Sends and decodes a 2xx answer as `T`; a problem document (or any other error) is thrown.
    public func call<T: Decodable>(_ method: String, _ path: String, body: (any Encodable)? = nil,
                                   as: T.Type = T.self) async throws -> T {
        let answer = try await send(method, path, body: try body.map { try WireJSON.encoder().encode($0) })
        try Self.check(answer)
        do { return try JSONDecoder().decode(T.self, from: answer.body) } catch {
            throw ClientError.undecodable("\(error)")
        }
    }

    /// Sends and only checks for success (a 204, say).
    public func call(_ method: String, _ path: String, body: (any Encodable)? = nil) async throws {
        try Self.check(try await send(method, path, body: try body.map { try WireJSON.encoder().encode($0) }))
    }

    /// Throws for an answer that is not a success: its problem document, or what it said.
    public static func check(_ answer: HTTPAnswer) throws {
        guard answer.status >= 300 else { return }
        if let p = answer.problem { throw ClientError.problem(p) }
        throw ClientError.unexpected(answer.status, String(decoding: answer.body.prefix(500), as: UTF8.self))
    }

    /// Streams a response body line by line (`GET /v1/events?follow=1`), calling `line` for
    /// each; returns when the server ends the stream. A non-2xx answer is thrown.
    public func streamLines(_ path: String, line: @Sendable (String) async throws -> Void) async throws {
        var request = HTTPClientRequest(url: baseURL + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .hours(24 * 365))
        } catch {
            throw ClientError.unreachable(baseURL + path, "\(error)")
        }
        guard response.status.code < 300 else {
            let buffer = try await response.body.collect(upTo: 1 << 20)
            try Self.check(HTTPAnswer(status: Int(response.status.code), contentType: nil,
                                      body: Data(buffer.readableBytesView), headers: []))
            return
        }
        var pending = Data()
        for try await chunk in response.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...nl)
                if !text.isEmpty { try await line(text) }
            }
        }
    }
}
