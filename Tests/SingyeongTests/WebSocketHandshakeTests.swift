import Testing
@testable import Singyeong

/// The opening handshake: accept key (RFC 6455 §1.3), validation order and
/// the `encoding` parameter rules of protocol.md §1.3.
@Suite struct WebSocketHandshakeTests {
    @Test func acceptKeyFromTheRFC() {
        let key = Array("dGhlIHNhbXBsZSBub25jZQ==".utf8)
        let accept = key.withUnsafeBytes { WebSocketHandshake.acceptValue(key: $0) }
        #expect(accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    /// Parses `request` and runs the handshake check on it.
    private func evaluate(_ request: String) -> (status: Int?, encoding: PayloadEncoding?) {
        let bytes = Array(request.utf8)
        return bytes.withUnsafeBytes { buffer in
            var head = HTTPRequestHead()
            guard case .complete = HTTPRequestParser.parseHead(buffer, limits: HTTPParserLimits(), into: &head) else {
                Issue.record("request did not parse: \(request)")
                return (nil, nil)
            }
            switch WebSocketHandshake.evaluate(head, in: buffer) {
            case .accept(_, let encoding): return (101, encoding)
            case .reject(let response): return (response.status, nil)
            }
        }
    }

    private func upgrade(_ target: String, method: String = "GET", version: String = "13", key: String = "dGhlIHNhbXBsZSBub25jZQ==", extra: String = "") -> String {
        "\(method) \(target) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: \(version)\r\nSec-WebSocket-Key: \(key)\r\n\(extra)\r\n"
    }

    @Test(arguments: [
        ("/gateway/websocket", PayloadEncoding.json),
        ("/gateway/websocket?encoding=json", .json),
        ("/gateway/websocket?encoding=msgpack", .msgpack),
        ("/gateway/websocket?encoding=msgpack&encoding=json", .json),
        ("/gateway/websocket?encoding=json&encoding=msgpack", .msgpack),
        ("/gateway/websocket?foo=bar&encoding=%6Dsgpack", .msgpack),
        ("/gateway/websocket?other=1", .json),
    ])
    func acceptedEncodings(target: String, expected: PayloadEncoding) {
        let result = evaluate(upgrade(target))
        #expect(result.status == 101)
        #expect(result.encoding == expected)
    }

    @Test(arguments: [
        "/gateway/websocket?encoding=etf", "/gateway/websocket?encoding=", "/gateway/websocket?encoding",
        "/gateway/websocket?encoding=JSON", "/gateway/websocket?encoding=xml", "/gateway/websocket?encoding=json&encoding=etf",
    ])
    func refusedEncodingsGet403(target: String) {
        #expect(evaluate(upgrade(target)).status == 403)
    }

    @Test func validationOrder() {
        #expect(evaluate(upgrade("/gateway/websocket", method: "POST")).status == 400)
        #expect(evaluate("GET /gateway/websocket HTTP/1.1\r\nHost: x\r\n\r\n").status == 400)
        #expect(evaluate(upgrade("/gateway/websocket", version: "8")).status == 426)
        #expect(evaluate(upgrade("/gateway/websocket", key: "short")).status == 400)
        #expect(evaluate(upgrade("/gateway/websocket", key: "dGhlIHNhbXBsZSBub25jZQ!!")).status == 400)
        // A bad upgrade is a 400 even when the encoding is also bad.
        #expect(evaluate("GET /gateway/websocket?encoding=etf HTTP/1.1\r\nHost: x\r\n\r\n").status == 400)
    }
}
