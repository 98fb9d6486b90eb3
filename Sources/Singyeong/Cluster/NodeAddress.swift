import CSystem
import Glibc

/// Node addresses as the cluster writes and reads them: `host:port` in the
/// registry (cluster.md §2.2, §8.2).
enum NodeAddress {
    /// The first non-loopback IPv4 address of this host with our port
    /// (cluster.md §8.2), or loopback when there is none.
    static func defaultAdvertise(port: Int) -> String {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return "127.0.0.1:\(port)" }
        defer { freeifaddrs(head) }
        var cursor = head
        while let entry = cursor {
            if let addr = entry.pointee.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET),
               entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 {
                var text = [CChar](repeating: 0, count: 64)
                addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
                }
                return "\(String(cString: text)):\(port)"
            }
            cursor = entry.pointee.ifa_next
        }
        return "127.0.0.1:\(port)"
    }

    /// A numeric address for `host` (itself when already numeric), for
    /// callers that must not resolve names on the loop (hiredis resolves
    /// with a blocking call inside its connect). `setting` names the
    /// setting in the start-up error.
    static func numeric(_ host: String, setting: String) throws -> String {
        var hints = addrinfo()
        hints.ai_socktype = SY_SOCK_STREAM
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &result)
        guard rc == 0, let info = result else {
            throw StartupError(description: "\(setting): cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else {
            return host
        }
        return String(cString: text)
    }

    /// `host:port` or `[v6]:port`.
    static func splitHostPort(_ address: String) -> (String, Int)? {
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            let host = String(address[address.index(after: address.startIndex)..<close])
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else { return nil }
            return (host, port)
        }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        return (String(address[..<colon]), port)
    }
}
