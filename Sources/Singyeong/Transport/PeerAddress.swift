import Glibc

/// The TCP peer of a connection, kept as raw bytes (formatting allocates, so
/// it happens only when someone asks: logs, proxy targets, REST).
struct PeerAddress {
    /// 16 bytes: IPv6, or IPv4-mapped IPv6 for IPv4 peers.
    var address: (UInt64, UInt64) = (0, 0)
    var port: UInt16 = 0

    init() {}

    init(_ storage: sockaddr_storage) {
        let family = Int32(storage.ss_family)
        var storage = storage
        withUnsafeBytes(of: &storage) { raw in
            switch family {
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                var bytes = [UInt8](repeating: 0, count: 16)
                bytes[10] = 0xff; bytes[11] = 0xff
                withUnsafeBytes(of: sin.sin_addr) { for i in 0..<4 { bytes[12 + i] = $0[i] } }
                bytes.withUnsafeBytes { address = $0.loadUnaligned(as: (UInt64, UInt64).self) }
                port = UInt16(bigEndian: sin.sin_port)
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                withUnsafeBytes(of: sin6.sin6_addr) { address = $0.loadUnaligned(as: (UInt64, UInt64).self) }
                port = UInt16(bigEndian: sin6.sin6_port)
            default:
                break
            }
        }
    }

    /// IPv4 and IPv4-mapped peers as a dotted quad, other IPv6 peers in
    /// RFC 5952 form (protocol.md §1.5).
    var host: String {
        var bytes = address
        return withUnsafeBytes(of: &bytes) { raw -> String in
            let isMapped = raw[0..<10].allSatisfy { $0 == 0 } && raw[10] == 0xff && raw[11] == 0xff
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            if isMapped {
                inet_ntop(AF_INET, raw.baseAddress! + 12, &text, socklen_t(text.count))
            } else {
                inet_ntop(AF_INET6, raw.baseAddress!, &text, socklen_t(text.count))
            }
            return String(cString: text)
        }
    }

    /// `host:port`, with brackets around IPv6, for log lines.
    var description: String {
        let h = host
        return h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
    }
}
