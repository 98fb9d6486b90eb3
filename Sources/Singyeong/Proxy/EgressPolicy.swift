import Glibc

/// Where `/api/v1/proxy` may connect (PROXY_DENY and this node's own ports).
///
/// It judges the address a socket is about to connect to — after DNS and on
/// every redirect (libcurl asks through CURLOPT_OPENSOCKETFUNCTION) — so
/// neither a name resolving to a forbidden address nor an upstream
/// redirecting there gets around it.
struct EgressPolicy {
    /// PROXY_DENY.
    var deny: [AddressBlock]
    /// The ports this node listens on (PORT, and the cluster port when
    /// clustering): refused on any address of this host, so a proxied request
    /// cannot loop back into this node.
    var ownPorts: Set<Int>
    /// BIND when it names one address (not `::` / `0.0.0.0`).
    var bindAddress: IPAddress?
    /// This host's interface addresses, asked only when the port is one of
    /// `ownPorts` (interfaces change while the node runs). Replaceable in tests.
    var interfaceAddresses: () -> [IPAddress]

    init(deny: [AddressBlock] = [], ownPorts: Set<Int> = [], bindAddress: IPAddress? = nil,
         interfaceAddresses: @escaping () -> [IPAddress] = EgressPolicy.hostInterfaceAddresses) {
        self.deny = deny
        self.ownPorts = ownPorts
        self.bindAddress = bindAddress
        self.interfaceAddresses = interfaceAddresses
    }

    /// Why connecting to `address`:`port` is refused (the caller's error
    /// text), or nil when it is allowed.
    func refusal(address: IPAddress, port: Int) -> String? {
        if deny.contains(where: { $0.contains(address) }) {
            return "egress denied: \(address)"
        }
        if ownPorts.contains(port) && isLocal(address) {
            return "egress denied: \(address) port \(port) (this node)"
        }
        return nil
    }

    /// An address that reaches this host: loopback, the unspecified address
    /// (Linux connects it to the local host), BIND, or an interface's address.
    func isLocal(_ address: IPAddress) -> Bool {
        if address.isIPv4 {
            let first = address.low >> 24
            if first == 127 || first == 0 { return true }
        } else if address.high == 0 && (address.low == 0 || address.low == 1) {
            return true
        }
        if address == bindAddress { return true }
        return interfaceAddresses().contains(address)
    }

    /// getifaddrs(3): every IPv4/IPv6 address of every interface (zone ids dropped).
    static func hostInterfaceAddresses() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [IPAddress] = []
        var entry = head
        while let current = entry {
            if let address = current.pointee.ifa_addr, let (ip, _) = IPAddress.from(sockaddr: UnsafeRawPointer(address)) {
                out.append(ip)
            }
            entry = current.pointee.ifa_next
        }
        return out
    }
}
