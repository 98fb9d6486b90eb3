import COpenSSL

/// The RFC 6455 opening handshake on the server side, and the gateway's
/// `encoding` query parameter (protocol.md §1.2–1.3).
///
/// Validation order: method (400), the upgrade headers (400; an unsupported
/// `Sec-WebSocket-Version` gets 426 with the version we speak), then the
/// encoding (403 with an empty body). Extensions such as permessage-deflate
/// are declined simply by not echoing them.
enum WebSocketHandshake {
    /// Outcome of checking an upgrade request.
    enum Outcome {
        case accept(key: Range<Int>, encoding: PayloadEncoding)
        case reject(HTTPResponse)
    }

    static func evaluate(_ head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> Outcome {
        guard head.method == .get else {
            return .reject(.errorDetail(400, "the gateway accepts only GET with a WebSocket upgrade"))
        }
        guard head.versionMinor >= 1,
              let upgrade = head.firstValue(of: "upgrade", in: buffer),
              headerTokenListContains(buffer, upgrade, "websocket"),
              head.connectionHasUpgradeToken
        else {
            return .reject(.errorDetail(400, "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)"))
        }
        guard let version = head.firstValue(of: "sec-websocket-version", in: buffer),
              asciiCaseInsensitiveEquals(buffer, version, "13")
        else {
            var response = HTTPResponse.errorDetail(426, "unsupported Sec-WebSocket-Version; this server speaks 13")
            response.headers.append(("sec-websocket-version", "13"))
            return .reject(response)
        }
        guard let key = head.firstValue(of: "sec-websocket-key", in: buffer), isValidKey(buffer, key) else {
            return .reject(.errorDetail(400, "missing or malformed Sec-WebSocket-Key"))
        }
        guard let encoding = encoding(head, in: buffer) else {
            return .reject(HTTPResponse(status: 403))
        }
        return .accept(key: key, encoding: encoding)
    }

    /// `encoding` from the query string: `json` (default) or `msgpack`; the
    /// last occurrence wins; anything else (including empty and `etf`) is nil.
    static func encoding(_ head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> PayloadEncoding? {
        guard let query = head.query else { return .json }
        var result: PayloadEncoding? = .json
        for (name, value) in URLQuery.pairs(UnsafeRawBufferPointer(rebasing: buffer[query])) where name == "encoding" {
            result = value == "json" ? .json : value == "msgpack" ? .msgpack : nil
        }
        return result
    }

    /// A key is the base64 of 16 bytes: 22 base64 characters and "==".
    static func isValidKey(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        guard range.count == 24, buffer[range.upperBound - 1] == UInt8(ascii: "="), buffer[range.upperBound - 2] == UInt8(ascii: "=") else {
            return false
        }
        for i in range.lowerBound..<(range.upperBound - 2) {
            let c = buffer[i]
            let ok = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2B || c == 0x2F
            if !ok { return false }
        }
        return true
    }

    /// `Sec-WebSocket-Accept`: base64(SHA-1(key + the RFC's GUID)).
    static func acceptValue(key: UnsafeRawBufferPointer) -> String {
        var input = Array(key)
        input.append(contentsOf: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)
        var digest = [UInt8](repeating: 0, count: Int(SHA_DIGEST_LENGTH))
        _ = SHA1(input, input.count, &digest)
        var encoded = [UInt8](repeating: 0, count: 32)
        let n = EVP_EncodeBlock(&encoded, digest, Int32(digest.count))
        return String(decoding: encoded[0..<Int(n)], as: UTF8.self)
    }

    /// The 101 response completing the upgrade.
    static func switchingProtocols(acceptValue: String) -> OutboundBytes {
        OutboundBytes.copying(Array("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: \(acceptValue)\r\n\r\n".utf8))
    }
}
