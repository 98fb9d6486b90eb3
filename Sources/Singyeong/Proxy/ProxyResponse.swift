/// Turns an upstream answer into the caller's response (rest.md §4.6,
/// Recommended): the status and body unchanged, every header lower-cased
/// with repeats kept, hop-by-hop headers and `content-length` dropped (this
/// server frames the body), `text/plain; charset=utf-8` when the upstream
/// named no content type.
enum ProxyResponse {
    static let droppedResponseHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "content-length",
    ]

    static func relay(status: Int, headers: [(String, String)], body: [UInt8]) -> HTTPResponse {
        var out: [(String, String)] = []
        out.reserveCapacity(headers.count + 1)
        var hasContentType = false
        for (name, value) in headers {
            let lower = name.lowercased()
            if droppedResponseHeaders.contains(lower) { continue }
            // Our own response writer adds the status line's framing; a value
            // with a line break would split the header (curl never yields one,
            // a peer frame might).
            if value.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a }) || !HTTPRequestParser.isToken(lower) { continue }
            if lower == "content-type" { hasContentType = true }
            out.append((lower, value))
        }
        if !hasContentType { out.append(("content-type", "text/plain; charset=utf-8")) }
        return HTTPResponse(status: status, headers: out, body: body)
    }
}
