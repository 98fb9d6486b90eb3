import Testing
@testable import Singyeong

/// Parses `bytes` into a fresh head; the head's ranges index `bytes`.
private func parse(_ bytes: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> (HTTPParseResult, HTTPRequestHead) {
    var head = HTTPRequestHead()
    let result = bytes.withUnsafeBytes { HTTPRequestParser.parseHead($0, limits: limits, into: &head) }
    return (result, head)
}

/// The text of `range` in `bytes`, for readable expectations.
private func text(_ bytes: [UInt8], _ range: Range<Int>?) -> String? {
    guard let range else { return nil }
    return String(decoding: bytes[range], as: UTF8.self)
}

/// What a valid request must parse to.
struct HTTPParserValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var method: HTTPMethod
    var methodText: String
    var path: String
    var query: String?
    var minor: Int = 1
    var keepAlive: Bool = true
    var upgrade: Bool = false
    var contentLength: Int? = nil
    var chunked: Bool = false
    var headerCount: Int
    /// Bytes after the head (body / pipelined data) appended to `raw`.
    var trailing: String = ""
    var testDescription: String { name }
}

/// An invalid request and the status it must be rejected with.
struct HTTPParserInvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var status: Int
    var limits: HTTPParserLimits = HTTPParserLimits()
    var testDescription: String { name }
}

let httpParserValidCases: [HTTPParserValidCase] = [
    HTTPParserValidCase(name: "simple GET", raw: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "GET with query", raw: "GET /v1/query?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
              method: .get, methodText: "GET", path: "/v1/query", query: "x=1&y=2", headerCount: 2),
    HTTPParserValidCase(name: "GET with empty query", raw: "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .get, methodText: "GET", path: "/a", query: "", headerCount: 1),
    HTTPParserValidCase(name: "POST with Content-Length", raw: "POST /send HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n",
              method: .post, methodText: "POST", path: "/send", query: nil, contentLength: 13, headerCount: 3,
              trailing: "{\"op\":\"ping\"}"),
    HTTPParserValidCase(name: "repeated identical Content-Length", raw: "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
              method: .put, methodText: "PUT", path: "/x", query: nil, contentLength: 0, headerCount: 3),
    HTTPParserValidCase(name: "HTTP/1.0 defaults to close", raw: "GET / HTTP/1.0\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, minor: 0, keepAlive: false, headerCount: 0),
    HTTPParserValidCase(name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, minor: 0, keepAlive: true, headerCount: 1),
    HTTPParserValidCase(name: "HTTP/1.0 keep-alive and close", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, minor: 0, keepAlive: false, headerCount: 2),
    HTTPParserValidCase(name: "HTTP/1.1 close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, keepAlive: false, headerCount: 2),
    HTTPParserValidCase(name: "Connection token list", raw: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
              method: .get, methodText: "GET", path: "/ws", query: nil, upgrade: true, headerCount: 3),
    HTTPParserValidCase(name: "merged Connection headers", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,,\r\nconnection:\tbar ,upgrade\t\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, upgrade: true, headerCount: 3),
    HTTPParserValidCase(name: "upgrade as substring is not a token", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrades, closed\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, upgrade: false, headerCount: 2),
    HTTPParserValidCase(name: "RFC 6455 §1.2 WebSocket upgrade",
              raw: "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n",
              method: .get, methodText: "GET", path: "/chat", query: nil, upgrade: true, headerCount: 7),
    HTTPParserValidCase(name: "Transfer-Encoding flagged", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
              method: .post, methodText: "POST", path: "/", query: nil, chunked: true, headerCount: 2),
    HTTPParserValidCase(name: "unknown method", raw: "PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .other, methodText: "PURGE", path: "/cache", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "lowercase method is not GET", raw: "get / HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .other, methodText: "get", path: "/", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "all known methods: DELETE", raw: "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .delete, methodText: "DELETE", path: "/x", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "OPTIONS asterisk-form", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .options, methodText: "OPTIONS", path: "*", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "absolute-form", raw: "GET http://example.com:80/p/q?z HTTP/1.1\r\nHost: example.com\r\n\r\n",
              method: .get, methodText: "GET", path: "/p/q", query: "z", headerCount: 1),
    HTTPParserValidCase(name: "absolute-form without path", raw: "HEAD http://example.com?z HTTP/1.1\r\nHost: example.com\r\n\r\n",
              method: .head, methodText: "HEAD", path: "", query: "z", headerCount: 1),
    HTTPParserValidCase(name: "leading empty lines skipped", raw: "\r\n\r\nPATCH /p HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .patch, methodText: "PATCH", path: "/p", query: nil, headerCount: 1),
    HTTPParserValidCase(name: "obs-text and empty values", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Spaces:   \t \r\nX-Obs: caf\u{E9}\r\n\r\n",
              method: .get, methodText: "GET", path: "/", query: nil, headerCount: 4),
    HTTPParserValidCase(name: "pipelined: only the first head", raw: "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
              method: .get, methodText: "GET", path: "/1", query: nil, headerCount: 1,
              trailing: "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
]

let httpParserInvalidCases: [HTTPParserInvalidCase] = [
    // request line
    HTTPParserInvalidCase(name: "empty method", raw: " / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "method with non-tchar", raw: "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "method too long", raw: String(repeating: "A", count: 33) + " / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "double space after method", raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "target not starting with /", raw: "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "target with CTL", raw: "GET /a\u{01}b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "target with DEL", raw: "GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "target with non-ASCII", raw: "GET /caf\u{E9} HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "target with fragment", raw: "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "asterisk-form with GET", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "authority-form", raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "absolute-form without authority", raw: "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "missing version", raw: "GET /\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "garbage version", raw: "GET / HTTX/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "lowercase version", raw: "GET / http/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "version with extra digit", raw: "GET / HTTP/1.10\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "trailing space after version", raw: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505),
    HTTPParserInvalidCase(name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 505),
    HTTPParserInvalidCase(name: "HTTP/0.9", raw: "GET / HTTP/0.9\r\nHost: a\r\n\r\n", status: 505),
    HTTPParserInvalidCase(name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", status: 505),
    HTTPParserInvalidCase(name: "too many leading empty lines", raw: String(repeating: "\r\n", count: 5) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "TLS ClientHello on plain port", raw: "\u{16}\u{03}\u{01}\u{02}\u{00}", status: 400),
    // line endings
    HTTPParserInvalidCase(name: "bare LF after request line", raw: "GET / HTTP/1.1\nHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "bare CR after request line", raw: "GET / HTTP/1.1\rHost: a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "bare LF after header", raw: "GET / HTTP/1.1\r\nHost: a\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "bare LF terminator", raw: "GET / HTTP/1.1\r\nHost: a\r\n\n", status: 400),
    HTTPParserInvalidCase(name: "bare CR in header value", raw: "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "bare CR terminator", raw: "GET / HTTP/1.1\r\nHost: a\r\n\rX", status: 400),
    HTTPParserInvalidCase(name: "leading bare LF", raw: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    // header fields
    HTTPParserInvalidCase(name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "empty header name", raw: "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "header name with non-tchar", raw: "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "header without colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "NUL in header value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{00}b\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "CTL in header value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{1B}b\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "DEL in header value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "whitespace before first header", raw: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", status: 400),
    // Content-Length / Transfer-Encoding / Host
    HTTPParserInvalidCase(name: "Content-Length with sign", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "negative Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Content-Length non-digit", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "empty Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Content-Length list", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Content-Length overflow", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Content-Length too large", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", status: 413),
    HTTPParserInvalidCase(name: "Content-Length above custom limit", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", status: 413,
                limits: HTTPParserLimits(maxBodySize: 10)),
    HTTPParserInvalidCase(name: "conflicting Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Content-Length with Transfer-Encoding", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "Transfer-Encoding with Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "HTTP/1.1 without Host", raw: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", status: 400),
    HTTPParserInvalidCase(name: "two Host headers", raw: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", status: 400),
    // limits
    HTTPParserInvalidCase(name: "head over maxHeadSize", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 100), status: 431,
                limits: HTTPParserLimits(maxHeadSize: 64)),
    HTTPParserInvalidCase(name: "complete head over maxHeadSize", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 100) + "\r\n\r\n", status: 431,
                limits: HTTPParserLimits(maxHeadSize: 64)),
    HTTPParserInvalidCase(name: "request line over maxHeadSize", raw: "GET /" + String(repeating: "p", count: 100) + " HTTP/1.1\r\nHost: a\r\n\r\n", status: 431,
                limits: HTTPParserLimits(maxHeadSize: 64)),
    HTTPParserInvalidCase(name: "too many headers", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", status: 431,
                limits: HTTPParserLimits(maxHeaderCount: 3)),
]

@Suite("HTTPRequestParser")
struct HTTPRequestParserTests {
    @Test("valid requests", arguments: httpParserValidCases)
    func valid(_ c: HTTPParserValidCase) {
        let headBytes = Array(c.raw.utf8)
        let bytes = headBytes + Array(c.trailing.utf8)
        let (result, head) = parse(bytes)
        #expect(result == .complete)
        #expect(head.method == c.method)
        #expect(text(bytes, head.methodRange) == c.methodText)
        #expect(text(bytes, head.path) == c.path)
        #expect(text(bytes, head.query) == c.query)
        #expect(head.versionMinor == c.minor)
        #expect(head.keepAlive == c.keepAlive)
        #expect(head.connectionHasUpgradeToken == c.upgrade)
        #expect(head.contentLength == c.contentLength)
        #expect(head.isChunked == c.chunked)
        #expect(head.headers.count == c.headerCount)
        #expect(head.headLength == headBytes.count)
        // The target is exactly the bytes between the two spaces of the request line.
        let line = String(decoding: headBytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: true)[0]
        #expect(text(bytes, head.target) == String(line.split(separator: " ")[1]))
    }

    @Test("every split of a valid request is incomplete until the head ends", arguments: httpParserValidCases)
    func incremental(_ c: HTTPParserValidCase) {
        let bytes = Array(c.raw.utf8) + Array(c.trailing.utf8)
        let (full, fullHead) = parse(bytes)
        #expect(full == .complete)
        var head = HTTPRequestHead()
        for n in 0...bytes.count {
            let prefix = Array(bytes[0..<n])
            let result = prefix.withUnsafeBytes { HTTPRequestParser.parseHead($0, limits: HTTPParserLimits(), into: &head) }
            if n < fullHead.headLength {
                #expect(result == .incomplete, "prefix \(n)")
            } else {
                #expect(result == .complete, "prefix \(n)")
                #expect(head == fullHead, "prefix \(n)")
            }
        }
    }

    @Test("invalid requests", arguments: httpParserInvalidCases)
    func invalid(_ c: HTTPParserInvalidCase) {
        let bytes = Array(c.raw.utf8)
        let (result, _) = parse(bytes, limits: c.limits)
        guard case .failure(let error) = result else {
            Issue.record("expected failure \(c.status), got \(result)")
            return
        }
        #expect(error.status == c.status, "\(error)")
    }

    @Test("invalid requests fail the same way when fed byte by byte", arguments: httpParserInvalidCases)
    func invalidIncremental(_ c: HTTPParserInvalidCase) {
        let bytes = Array(c.raw.utf8)
        let (full, _) = parse(bytes, limits: c.limits)
        var head = HTTPRequestHead()
        var verdict = HTTPParseResult.incomplete
        for n in 0...bytes.count {
            verdict = Array(bytes[0..<n]).withUnsafeBytes { HTTPRequestParser.parseHead($0, limits: c.limits, into: &head) }
            if verdict != .incomplete { break }
        }
        #expect(verdict == full)
    }

    @Test func pipelinedRequests() {
        let bytes = Array("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b?c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET".utf8)
        var head = HTTPRequestHead()
        var offset = 0
        bytes.withUnsafeBytes { all in
            var buf = UnsafeRawBufferPointer(rebasing: all[offset...])
            #expect(HTTPRequestParser.parseHead(buf, limits: HTTPParserLimits(), into: &head) == .complete)
            #expect(head.method == .post)
            #expect(httpString(buf, head.path) == "/a")
            #expect(head.contentLength == 3)
            #expect(head.keepAlive)
            offset += head.headLength + (head.contentLength ?? 0)

            buf = UnsafeRawBufferPointer(rebasing: all[offset...])
            #expect(HTTPRequestParser.parseHead(buf, limits: HTTPParserLimits(), into: &head) == .complete)
            #expect(head.method == .get)
            #expect(httpString(buf, head.path) == "/b")
            #expect(httpString(buf, head.query!) == "c")
            #expect(!head.keepAlive)
            offset += head.headLength

            buf = UnsafeRawBufferPointer(rebasing: all[offset...])
            #expect(HTTPRequestParser.parseHead(buf, limits: HTTPParserLimits(), into: &head) == .incomplete)
        }
        #expect(offset == bytes.count - 3)
    }

    @Test func headerValueOWSIsTrimmed() {
        let bytes = Array("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t v a l \t \r\nX-B:\t\t\r\nX-C:x\r\n\r\n".utf8)
        let (result, head) = parse(bytes)
        #expect(result == .complete)
        #expect(head.headers.count == 4)
        #expect(text(bytes, head.headers[0].name) == "Host")
        #expect(text(bytes, head.headers[0].value) == "a")
        #expect(text(bytes, head.headers[1].value) == "v a l")
        #expect(text(bytes, head.headers[2].value) == "")
        #expect(text(bytes, head.headers[3].value) == "x")
    }

    @Test func headersCapacityIsReused() {
        var fields = ""
        for i in 0..<40 { fields += "X-\(i): \(i)\r\n" }
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n".utf8)
        var head = HTTPRequestHead()
        bytes.withUnsafeBytes { buf in
            #expect(HTTPRequestParser.parseHead(buf, limits: HTTPParserLimits(), into: &head) == .complete)
        }
        let capacity = head.headers.capacity
        #expect(capacity >= 41)
        let storage = head.headers.withUnsafeBufferPointer { $0.baseAddress }
        for _ in 0..<3 {
            bytes.withUnsafeBytes { buf in
                #expect(HTTPRequestParser.parseHead(buf, limits: HTTPParserLimits(), into: &head) == .complete)
            }
            #expect(head.headers.count == 41)
            #expect(head.headers.capacity == capacity)
            #expect(head.headers.withUnsafeBufferPointer { $0.baseAddress } == storage)
        }
        head.reset()
        #expect(head.headers.isEmpty && head.headers.capacity == capacity)
    }

    @Test func headExactlyAtLimitIsAccepted() {
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        let exact = HTTPParserLimits(maxHeadSize: bytes.count)
        #expect(parse(bytes, limits: exact).0 == .complete)
        #expect(parse(bytes + Array("GET".utf8), limits: exact).0 == .complete)
        // One byte short: incomplete while the buffer fits, 431 once it does not.
        let short = HTTPParserLimits(maxHeadSize: bytes.count - 1)
        #expect(parse(Array(bytes.dropLast()), limits: short).0 == .incomplete)
        if case .failure(let e) = parse(bytes, limits: short).0 { #expect(e.status == 431) } else { Issue.record("expected 431") }
        // Exactly maxHeaderCount headers is fine.
        let counted = HTTPParserLimits(maxHeaderCount: 1)
        #expect(parse(bytes, limits: counted).0 == .complete)
    }

    @Test func lookupHelpers() {
        let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k1\r\nsec-websocket-key: k2\r\nUpgrade: WebSocket\r\n\r\n".utf8)
        let (result, head) = parse(bytes)
        #expect(result == .complete)
        bytes.withUnsafeBytes { buf in
            #expect(head.firstValue(of: "sec-websocket-key", in: buf).map { httpString(buf, $0) } == "k1")
            #expect(head.firstValue(of: Array("upgrade".utf8), in: buf).map { httpString(buf, $0) } == "WebSocket")
            #expect(head.firstValue(of: "origin", in: buf) == nil)
            let upgrade = head.firstValue(of: "upgrade", in: buf)!
            #expect(asciiCaseInsensitiveEquals(buf, upgrade, "websocket"))
            #expect(asciiCaseInsensitiveEquals(buf, upgrade, Array("WEBSOCKET".utf8)))
            #expect(!asciiCaseInsensitiveEquals(buf, upgrade, "websockets"))
            #expect(!asciiCaseInsensitiveEquals(buf, upgrade, "websocke"))
            #expect(!asciiCaseInsensitiveEquals(buf, 0..<(buf.count + 1), "x"))
            #expect(headerTokenListContains(buf, upgrade, "websocket"))
            #expect(!headerTokenListContains(buf, upgrade, "web"))
        }
        let list = Array(" ,a , B\t,,c,".utf8)
        list.withUnsafeBytes { buf in
            #expect(headerTokenListContains(buf, 0..<buf.count, "a"))
            #expect(headerTokenListContains(buf, 0..<buf.count, "b"))
            #expect(headerTokenListContains(buf, 0..<buf.count, "C"))
            #expect(!headerTokenListContains(buf, 0..<buf.count, ""))
            #expect(!headerTokenListContains(buf, 0..<buf.count, "a , b"))
        }
    }

    @Test func errorEquality() {
        #expect(HTTPParseError(status: 400, reason: "x") == HTTPParseError(status: 400, reason: "x"))
        #expect(HTTPParseError(status: 400, reason: "x") != HTTPParseError(status: 400, reason: "y"))
        #expect(HTTPParseError(status: 400, reason: "x") != HTTPParseError(status: 431, reason: "x"))
    }

    @Test func emptyBufferIsIncomplete() {
        #expect(parse([]).0 == .incomplete)
        #expect(parse(Array("\r".utf8)).0 == .incomplete)
        #expect(parse(Array("\r\n\r\n".utf8)).0 == .incomplete)
    }

    /// The one token check (the parser's methods and header names, and the
    /// proxy's): exactly RFC 9110's tchar, at least one of them.
    @Test func tokenIsRFC9110() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for b in 0...255 {
            #expect(HTTPRequestParser.isTChar(UInt8(b)) == tchar.contains(UInt8(b)), "byte \(b)")
            let text = String(decoding: [UInt8(b)], as: UTF8.self)
            #expect(HTTPRequestParser.isToken(text) == tchar.contains(UInt8(b)), "byte \(b)")
        }
        for token in ["GET", "x-request-id", "Content-Type", "!#$%&'*+-.^_`|~", "M-SEARCH"] {
            #expect(HTTPRequestParser.isToken(token), "\(token)")
        }
        for text in ["", "a b", "a:b", "x(y)", "a\r\nb", "caf\u{E9}", "a\u{0}", "\"q\""] {
            #expect(!HTTPRequestParser.isToken(text), "\(text)")
        }
    }
}
