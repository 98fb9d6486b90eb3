import Glibc

/// An IPv4 or IPv6 address as a 128-bit number (two big-endian words).
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) *is* the IPv4 address it
/// carries: a socket connecting to it reaches that IPv4 host, so the egress
/// policy must judge it by the IPv4 rules.
///
/// In Config with `AddressBlock`, which is built from it when PROXY_DENY is
/// parsed; the proxy uses it for the addresses it connects to.
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
