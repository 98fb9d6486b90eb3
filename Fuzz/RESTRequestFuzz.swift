// libFuzzer harness for the REST request path of /api/v1/proxy and
// discovery: an HTTP request is parsed, its body and URL parameters merged
// (rest.md §2.2), the proxy request validated (§4.2), the upstream URL built
// (§4.4), and response headers relayed (§4.6). Built by scripts/fuzz.sh.
//
// Invariants checked beyond "no crash": a validated request has a route and
// header values without CR/LF (nothing can split the upstream request), a
// GET/HEAD has no body, the upstream URL has exactly one slash between base
// and route, and relayed headers are lower-case tokens without line breaks.

/// The compiled-query cache the node uses for proxy queries (small, so it
/// also empties and refills during a run).
nonisolated(unsafe) private let cache = QueryCache(capacity: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    // The decoders need simdjson's padding after the input.
    let input = UnsafeMutableRawBufferPointer.allocate(byteCount: size + InputBuffer.padding, alignment: 16)
    defer { input.deallocate() }
    input.initializeMemory(as: UInt8.self, repeating: 0)
    if size > 0 { input.baseAddress!.copyMemory(from: data, byteCount: size) }
    let buffer = UnsafeRawBufferPointer(rebasing: input[0..<size])

    var head = HTTPRequestHead()
    guard case .complete = HTTPRequestParser.parseHead(buffer, limits: HTTPParserLimits(), into: &head) else { return 0 }
    let end = min(size, head.headLength + (head.contentLength ?? 0))
    let body = UnsafeRawBufferPointer(rebasing: buffer[head.headLength..<end])
    guard case .success(let fields) = RESTBody.fields(head, in: buffer, body: body) else { return 0 }
    if case .string(let q)? = fields["q"] { _ = RESTBody.stringArray(q) }
    guard case .success(let request) = ProxyRequest.validate(fields, cache: cache) else { return 0 }
    precondition(!request.route.utf8.contains { $0 <= 0x20 || $0 == 0x7f })
    for (name, value) in request.headers {
        precondition(HTTPRequestParser.isToken(name))
        precondition(!value.utf8.contains { $0 == 0x0d || $0 == 0x0a })
    }
    if request.method == "GET" || request.method == "HEAD" { precondition(request.body == nil) }
    let stripped = request.route.drop { $0 == "/" }
    for address in ["10.0.0.1:80", "::1", "http://h/base/"] {
        let url = UpstreamURL.build(address: address, route: request.route)
        let base = url.dropLast(stripped.count)
        precondition(url.hasSuffix(stripped) && base.hasSuffix("/") && !base.hasSuffix("//"), "\(url)")
    }
    _ = UpstreamURL.build(address: String(request.route.prefix(40)), route: request.route)
    let relayed = ProxyResponse.relay(status: 200, headers: request.headers, body: [])
    for (name, value) in relayed.headers {
        precondition(name == name.lowercased() && HTTPRequestParser.isToken(name))
        precondition(!value.utf8.contains { $0 == 0x0d || $0 == 0x0a })
    }
    _ = relayed.encoded(keepAlive: true)
    return 0
}
