import COpenSSL

/// The RFC 6455 opening handshake on the server side, and the gateway's
/// `encoding` query parameter (protocol.md §1.2–1.3).
///
/// Validation order: method (400), the upgrade headers (400; an unsupported
/// `Sec-WebSocket-Version` gets 426 with the version we speak), then the
/// encoding (403 with an empty body). Extensions such as permessage-deflate
/// are declined simply by not echoing them.
enum WebSocketHandshake {
    /// The negotiated frame encoding of a gateway connection.
    enum Encoding: Sendable {
        case json, msgpack
    }

    /// Outcome of checking an upgrade request.
    enum Outcome {
        case accept(key: Range<Int>, encoding: Encoding)
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
    static func encoding(_ head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> Encoding? {
        guard let query = head.query else { return .json }
        var result: Encoding? = .json
        var start = query.lowerBound
        while start <= query.upperBound {
            var end = start
            while end < query.upperBound && buffer[end] != UInt8(ascii: "&") { end += 1 }
            let pair = decodeComponent(buffer, start..<end)
            if let equals = pair.firstIndex(of: UInt8(ascii: "=")) {
                if pair[..<equals].elementsEqual("encoding".utf8) {
                    let value = pair[(equals + 1)...]
                    if value.elementsEqual("json".utf8) { result = .json }
                    else if value.elementsEqual("msgpack".utf8) { result = .msgpack }
                    else { result = nil }
                }
            } else if pair.elementsEqual("encoding".utf8) {
                result = nil
            }
            start = end + 1
        }
        return result
    }

    /// Percent-decodes (and maps `+` to space in) one `name=value` pair.
    private static func decodeComponent(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var i = range.lowerBound
        while i < range.upperBound {
            let byte = buffer[i]
            if byte == UInt8(ascii: "%"), i + 2 < range.upperBound, let high = hexValue(buffer[i + 1]), let low = hexValue(buffer[i + 2]) {
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                i += 1
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
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
