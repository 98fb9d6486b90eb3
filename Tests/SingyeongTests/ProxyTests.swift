import Testing
@testable import Singyeong

/// The pure parts of `/api/v1/proxy` and discovery: request validation in
/// the spec's order with its texts (rest.md §4.2), upstream URL building
/// (§4.4), response header relaying (§4.6), URL query strings, the raw-tail
/// peer frame body, and discovery's `q` parameter (§6).
@Suite struct ProxyTests {
    private func fields(_ json: String) -> ValueObject {
        var tape = DocumentTape()
        try! JSONTapeDecoder.decode(copying: json.utf8, into: &tape)
        guard case .object(let object) = tape.value(tape.root) else { fatalError("not an object: \(json)") }
        return object
    }

    private func failure(_ json: String) -> (Int, String)? {
        switch ProxyRequest.validate(fields(json)) {
        case .success: return nil
        case .failure(let response): return (response.status, String(decoding: response.body, as: UTF8.self))
        }
    }

    static let q = "\"query\":{\"application\":\"a\"}"

    @Test(arguments: [
        ("{}", "{\"method\":[\"no method provided\"]}"),
        ("{\"method\":null,\"route\":\"/\",\(q)}", "{\"method\":[\"no method provided\"]}"),
        ("{\"method\":\"GET\"}", "{\"route\":[\"no route provided\"]}"),
        ("{\"method\":\"GET\",\"route\":null,\(q)}", "{\"route\":[\"no route provided\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\"}", "{\"query\":[\"no query provided\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"query\":null}", "{\"query\":[\"no query provided\"]}"),
        // Order: a missing route is reported before an invalid method.
        ("{\"method\":\"MOVE\"}", "{\"route\":[\"no route provided\"]}"),
        ("{\"method\":\"MOVE\",\"route\":\"/\",\(q)}",
         "{\"errors\":[\"MOVE is not a valid method! (valid methods: [\\\"GET\\\", \\\"HEAD\\\", \\\"POST\\\", \\\"PUT\\\", \\\"DELETE\\\", \\\"CONNECT\\\", \\\"OPTIONS\\\", \\\"TRACE\\\", \\\"PATCH\\\"])\"]}"),
        ("{\"method\":\"get\",\"route\":\"/\",\(q)}",
         "{\"errors\":[\"get is not a valid method! (valid methods: [\\\"GET\\\", \\\"HEAD\\\", \\\"POST\\\", \\\"PUT\\\", \\\"DELETE\\\", \\\"CONNECT\\\", \\\"OPTIONS\\\", \\\"TRACE\\\", \\\"PATCH\\\"])\"]}"),
        ("{\"method\":\"TRACE\",\"route\":\"/\",\(q)}",
         "{\"errors\":[\"TRACE is not a supported method! (not supported: [\\\"CONNECT\\\", \\\"OPTIONS\\\", \\\"TRACE\\\"])\"]}"),
        ("{\"method\":\"CONNECT\",\"route\":\"/\",\(q)}",
         "{\"errors\":[\"CONNECT is not a supported method! (not supported: [\\\"CONNECT\\\", \\\"OPTIONS\\\", \\\"TRACE\\\"])\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"body\":\"x\",\(q)}",
         "{\"errors\":[\"no body required but one given (you probably wanted to send nil)\"]}"),
        ("{\"method\":\"HEAD\",\"route\":\"/\",\"body\":{},\(q)}",
         "{\"errors\":[\"no body required but one given (you probably wanted to send nil)\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"body\":0,\(q)}",
         "{\"errors\":[\"no body required but one given (you probably wanted to send nil)\"]}"),
        ("{\"method\":[\"GET\"],\"route\":\"/\",\(q)}", "{\"errors\":[\"method: must be a string\"]}"),
        ("{\"method\":\"GET\",\"route\":{},\(q)}", "{\"errors\":[\"route: must be a string\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/a b\",\(q)}", "{\"errors\":[\"route: must not contain spaces or control characters\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/a\\r\\nX: y\",\(q)}", "{\"errors\":[\"route: must not contain spaces or control characters\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"headers\":[],\(q)}", "{\"errors\":[\"headers: must be an object of strings\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"headers\":{\"a\":1},\(q)}", "{\"errors\":[\"headers: must be an object of strings\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"headers\":{\"a b\":\"1\"},\(q)}", "{\"errors\":[\"headers: invalid header name \\\"a b\\\"\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"headers\":{\"a\":\"1\\r\\nb: 2\"},\(q)}", "{\"errors\":[\"headers: invalid value for \\\"a\\\"\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"query\":[]}", "{\"errors\":[\"invalid query: query: must be an object\"]}"),
        ("{\"method\":\"GET\",\"route\":\"/\",\"query\":{\"application\":1}}", "{\"errors\":[\"invalid query: application: must be a string or null\"]}"),
    ] as [(String, String)])
    func validationOrderAndTexts(input: String, expected: String) {
        guard let (status, body) = failure(input) else {
            Issue.record("accepted \(input)")
            return
        }
        #expect(status == 400)
        #expect(body == expected, "\(input)")
    }

    @Test(arguments: [
        // body absent / null / false → "" (no body at all for GET/HEAD).
        ("{\"method\":\"GET\",\"route\":\"/\",\(q)}", "GET", nil),
        ("{\"method\":\"GET\",\"route\":\"/\",\"body\":null,\(q)}", "GET", nil),
        ("{\"method\":\"HEAD\",\"route\":\"/\",\"body\":false,\(q)}", "HEAD", nil),
        ("{\"method\":\"GET\",\"route\":\"/\",\"body\":\"\",\(q)}", "GET", nil),
        ("{\"method\":\"POST\",\"route\":\"/\",\(q)}", "POST", ""),
        ("{\"method\":\"DELETE\",\"route\":\"/\",\"body\":null,\(q)}", "DELETE", ""),
        ("{\"method\":\"POST\",\"route\":\"/\",\"body\":\"raw text\",\(q)}", "POST", "raw text"),
        ("{\"method\":\"PUT\",\"route\":\"/\",\"body\":{\"a\":[1,2.5,\"x\"]},\(q)}", "PUT", "{\"a\":[1,2.5,\"x\"]}"),
        ("{\"method\":\"PATCH\",\"route\":\"/\",\"body\":[true],\(q)}", "PATCH", "[true]"),
        ("{\"method\":\"POST\",\"route\":\"/\",\"body\":true,\(q)}", "POST", "true"),
        ("{\"method\":\"POST\",\"route\":\"/\",\"body\":42,\(q)}", "POST", "42"),
    ] as [(String, String, String?)])
    func bodies(input: String, method: String, body: String?) throws {
        let request = try ProxyRequest.validate(fields(input)).get()
        #expect(request.method == method)
        #expect(request.body.map { String(decoding: $0, as: UTF8.self) } == body)
    }

    @Test func headersDropHopByHopAndForwardedFor() throws {
        let request = try ProxyRequest.validate(fields("""
        {"method":"GET","route":"/x?y=1","headers":{"Content-Type":"text/plain","Connection":"close","X-Forwarded-For":"6.6.6.6",
         "x-forwarded-for":"7.7.7.7","Transfer-Encoding":"chunked","Content-Length":"5","X-Custom":"v","Host":"example.org"},\(Self.q)}
        """)).get()
        #expect(request.headers.map { $0.0 } == ["Content-Type", "X-Custom", "Host"])
        #expect(request.route == "/x?y=1")
    }

    @Test func restrictedIsForcedOff() throws {
        let request = try ProxyRequest.validate(fields("{\"method\":\"GET\",\"route\":\"/\",\"query\":{\"application\":\"a\",\"restricted\":true}}")).get()
        #expect(request.query.includeRestricted == false)
        #expect(String(decoding: request.encodedQuery, as: UTF8.self) == "{\"application\":\"a\",\"restricted\":false}")
    }

    @Test(arguments: [
        ("10.0.0.5:8080", "/users/1", "http://10.0.0.5:8080/users/1"),
        ("10.0.0.5:8080", "users/1", "http://10.0.0.5:8080/users/1"),
        ("10.0.0.5", "///users", "http://10.0.0.5/users"),
        ("10.0.0.5/", "/", "http://10.0.0.5/"),
        ("10.0.0.5", "", "http://10.0.0.5/"),
        ("::1", "/a", "http://[::1]/a"),
        ("2001:db8::7", "/a?b=c&d", "http://[2001:db8::7]/a?b=c&d"),
        ("[::1]:9000", "/a", "http://[::1]:9000/a"),
        ("http://svc.local:81/base/", "/a", "http://svc.local:81/base/a"),
        ("HTTPS://svc.example", "a", "HTTPS://svc.example/a"),
        ("https://svc.example//", "//a", "https://svc.example/a"),
        ("host.internal", "/p", "http://host.internal/p"),
    ] as [(String, String, String)])
    func upstreamURL(address: String, route: String, expected: String) {
        #expect(UpstreamURL.build(address: address, route: route) == expected)
    }

    @Test func responseHeadersRelayed() {
        let response = ProxyResponse.relay(status: 201, headers: [
            ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Length", "3"), ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"), ("X-Thing", "v"), ("Bad Header", "x"), ("x-split", "a\r\nb: c"),
        ], body: [1, 2, 3])
        #expect(response.status == 201)
        #expect(response.headers.map { "\($0.0): \($0.1)" } == [
            "set-cookie: a=1", "set-cookie: b=2", "x-thing: v", "content-type: text/plain; charset=utf-8",
        ])
        #expect(response.body == [1, 2, 3])
        let typed = ProxyResponse.relay(status: 200, headers: [("Content-Type", "application/json")], body: [])
        #expect(typed.headers.map { "\($0.0): \($0.1)" } == ["content-type: application/json"])
    }

    @Test(arguments: [
        ("a=b&c=d", [("a", "b"), ("c", "d")]),
        ("q=%5B%22test%22,%22webscale%22%5D", [("q", "[\"test\",\"webscale\"]")]),
        ("a+b=c+d&&e", [("a b", "c d"), ("e", "")]),
        ("bad=%zz%4", [("bad", "%zz%4")]),
        ("", []),
        ("x=%C3%A9", [("x", "é")]),
    ] as [(String, [(String, String)])])
    func urlQueries(input: String, expected: [(String, String)]) {
        let pairs = Array(input.utf8).withUnsafeBytes { URLQuery.pairs($0) }
        #expect(pairs.map { "\($0.0)=\($0.1)" } == expected.map { "\($0.0)=\($0.1)" })
    }

    @Test(arguments: [
        ("[\"a\",\"b\"]", ["a", "b"] as [String]?),
        ("[]", []),
        ("[1]", nil),
        ("{\"a\":1}", nil),
        ("\"a\"", nil),
        ("[\"a\"", nil),
        ("", nil),
    ] as [(String, [String]?)])
    func discoveryTagsParameter(input: String, expected: [String]?) {
        #expect(RESTBody.stringArray(input) == expected)
    }

    @Test func rawTailBodies() {
        let body = PeerFrameCodec.rawTailBody(header: [0x80], tail: [1, 2, 3])
        #expect(body == [0, 0, 0, 1, 0x80, 1, 2, 3])
        let parts = body.withUnsafeBytes { PeerFrameCodec.splitRawTail($0) }
        #expect(parts?.header == 4..<5)
        #expect(parts?.tail == 5..<8)
        for bad in [[0, 0, 0], [0, 0, 0, 9, 1]] as [[UInt8]] {
            #expect(bad.withUnsafeBytes { PeerFrameCodec.splitRawTail($0) } == nil)
        }
    }
}
