import Glibc

/// The upstream URL of a proxied request (rest.md §4.4, Recommended): the
/// client's `socket_ip` (identify `ip`, else its TCP peer address) is the
/// base, the route is appended with exactly one slash between them.
enum UpstreamURL {
    static func build(address: String, route: String) -> String {
        var base: Substring
        let lower = address.prefix(8).lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            base = Substring(address)
        } else if isBareIPv6(address) {
            base = Substring("http://[\(address)]")
        } else {
            base = Substring("http://\(address)")
        }
        while base.hasSuffix("/") { base = base.dropLast() }
        var path = Substring(route)
        while path.hasPrefix("/") { path = path.dropFirst() }
        return "\(base)/\(path)"
    }

    /// An IPv6 literal without brackets or port (`::1`, `fe80::1%eth0`).
    static func isBareIPv6(_ address: String) -> Bool {
        guard address.contains(":") else { return false }
        var text = address
        if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }
        var storage = in6_addr()
        return inet_pton(AF_INET6, text, &storage) == 1
    }
}

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
            if value.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a }) || !ProxyRequest.isToken(lower) { continue }
            if lower == "content-type" { hasContentType = true }
            out.append((lower, value))
        }
        if !hasContentType { out.append(("content-type", "text/plain; charset=utf-8")) }
        return HTTPResponse(status: status, headers: out, body: body)
    }
}
