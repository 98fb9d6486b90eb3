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
