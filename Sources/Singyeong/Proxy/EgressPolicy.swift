import Glibc

/// An IPv4 or IPv6 address as a 128-bit number (two big-endian words).
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) *is* the IPv4 address it
/// carries: a socket connecting to it reaches that IPv4 host, so the egress
/// policy must judge it by the IPv4 rules.
struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    let isIPv4: Bool
    /// IPv6: bits 127...64. IPv4: 0.
    let high: UInt64
    /// IPv6: bits 63...0. IPv4: the address in the low 32 bits.
    let low: UInt64

    var bitWidth: Int { isIPv4 ? 32 : 128 }

    private init(isIPv4: Bool, high: UInt64, low: UInt64) {
        self.isIPv4 = isIPv4
        self.high = high
        self.low = low
    }

    init(ipv4 value: UInt32) {
        self.init(isIPv4: true, high: 0, low: UInt64(value))
    }

    /// 16 bytes in network order; IPv4-mapped becomes IPv4.
    init(ipv6 bytes: UnsafeRawBufferPointer) {
        var h: UInt64 = 0
        var l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
        if h == 0 && l >> 32 == 0xffff {
            self.init(ipv4: UInt32(truncatingIfNeeded: l))
        } else {
            self.init(isIPv4: false, high: h, low: l)
        }
    }

    /// A numeric address: dotted quad, or IPv6 (optionally in brackets, an
    /// optional `%zone` ignored). Names are not resolved.
    init?(_ text: String) {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(text), &v4) == 1 {
            self.init(ipv4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, String(text), &v6) == 1 else { return nil }
        self = withUnsafeBytes(of: &v6) { IPAddress(ipv6: $0) }
    }

    /// The address and port of an AF_INET or AF_INET6 socket address, else nil.
    static func from(sockaddr address: UnsafeRawPointer) -> (IPAddress, Int)? {
        switch Int32(address.load(as: sockaddr.self).sa_family) {
        case AF_INET:
            let sin = address.loadUnaligned(as: sockaddr_in.self)
            return (IPAddress(ipv4: UInt32(bigEndian: sin.sin_addr.s_addr)), Int(UInt16(bigEndian: sin.sin_port)))
        case AF_INET6:
            var sin6 = address.loadUnaligned(as: sockaddr_in6.self)
            let ip = withUnsafeBytes(of: &sin6.sin6_addr) { IPAddress(ipv6: $0) }
            return (ip, Int(UInt16(bigEndian: sin6.sin6_port)))
        default:
            return nil
        }
    }

    /// The address with only the bits the masks keep.
    func masked(high highMask: UInt64, low lowMask: UInt64) -> IPAddress {
        IPAddress(isIPv4: isIPv4, high: high & highMask, low: low & lowMask)
    }

    /// Dotted quad, or RFC 5952 IPv6.
    var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        if isIPv4 {
            var v4 = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
            inet_ntop(AF_INET, &v4, &text, socklen_t(text.count))
        } else {
            var bytes = (high.bigEndian, low.bigEndian)
            inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count))
        }
        return String(cString: text)
    }
}

/// A CIDR block (`169.254.0.0/16`, `fe80::/10`, or one address).
///
/// IPv4 blocks match IPv4 addresses (IPv4-mapped IPv6 included), IPv6 blocks
/// the other IPv6 addresses; a block written as `::ffff:a.b.c.d/n` with
/// n ≥ 96 is the IPv4 block `a.b.c.d/(n-96)`.
struct AddressBlock: Hashable, Sendable, CustomStringConvertible {
    let base: IPAddress
    let prefixLength: Int

    func contains(_ address: IPAddress) -> Bool {
        guard address.isIPv4 == base.isIPv4 else { return false }
        let (highMask, lowMask) = Self.masks(prefixLength, width: base.bitWidth)
        return address.high & highMask == base.high && address.low & lowMask == base.low
    }

    var description: String { "\(base)/\(prefixLength)" }

    /// The block, or why `text` is not one (for a start-up error message).
    static func parse(_ text: String) -> Result<AddressBlock, SettingsError> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let addressText = String(parts[0])
        if addressText.contains("%") || addressText.hasPrefix("[") {
            return .failure(SettingsError("\"\(text)\": write a plain address, without brackets or %zone"))
        }
        guard let address = IPAddress(addressText) else {
            return .failure(SettingsError("\"\(text)\": \"\(addressText)\" is not a numeric IPv4 or IPv6 address"))
        }
        // A mapped IPv6 rule counts as its IPv4 rule: widths differ by 96.
        let mapped = address.isIPv4 && addressText.contains(":")
        let width = mapped ? 128 : address.bitWidth
        var length = width
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  digits.count <= 3, !(digits.count > 1 && digits.hasPrefix("0")), let value = Int(digits), value <= width
            else {
                return .failure(SettingsError("\"\(text)\": the prefix length must be a number from 0 to \(width)"))
            }
            length = value
        }
        if mapped {
            guard length >= 96 else {
                return .failure(SettingsError("\"\(text)\": an IPv4-mapped block needs a prefix length of 96 or more (write the IPv4 block)"))
            }
            length -= 96
        }
        let (highMask, lowMask) = masks(length, width: address.bitWidth)
        guard address.high & ~highMask == 0, address.low & ~lowMask == 0 else {
            let network = address.masked(high: highMask, low: lowMask)
            return .failure(SettingsError("\"\(text)\": address bits set past the prefix (did you mean \(network)/\(length)?)"))
        }
        return .success(AddressBlock(base: address, prefixLength: length))
    }

    /// A comma-separated list (blanks around entries ignored). An empty or
    /// blank text is the empty list.
    static func parseList(_ text: String) -> Result<[AddressBlock], SettingsError> {
        let trimmed = text.trimmedBlanks
        if trimmed.isEmpty { return .success([]) }
        var blocks: [AddressBlock] = []
        for entry in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let item = entry.trimmedBlanks
            guard !item.isEmpty else { return .failure(SettingsError("empty entry in the comma-separated list")) }
            switch parse(item) {
            case .success(let block): blocks.append(block)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(blocks)
    }

    /// Masks keeping the first `length` bits of a `width`-bit address.
    private static func masks(_ length: Int, width: Int) -> (UInt64, UInt64) {
        if width == 32 {
            let mask: UInt64 = length == 0 ? 0 : (0xffff_ffff << UInt64(32 - length)) & 0xffff_ffff
            return (0, mask)
        }
        func word(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : ~0 << UInt64(64 - bits) }
        return (word(length), word(length - 64))
    }
}

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

    /// PROXY_DENY's default: link-local (where cloud metadata services live,
    /// 169.254.169.254) and the metadata addresses outside it (AWS's IPv6
    /// endpoint, Alibaba Cloud's).
    static let defaultDeny = "169.254.0.0/16,fe80::/10,fd00:ec2::254/128,100.100.100.200/32"

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
