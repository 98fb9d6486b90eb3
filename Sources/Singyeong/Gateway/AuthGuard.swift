import COpenSSL

/// Password checks for IDENTIFY and the REST API (protocol.md §4.3,
/// rest.md §2.1), plus the brute-force limit the original lacked.
///
/// Comparison is constant-time: both sides are hashed to SHA-256 first, so the
/// comparison neither stops at the first differing byte nor leaks the
/// password's length, then `CRYPTO_memcmp` compares the digests.
///
/// The limit counts failed attempts per source in fixed one-minute windows;
/// past `limit` failures a source is refused (even with the right password)
/// until its window ends. Only attempts that carried a credential count: a
/// request without one cannot lock anybody out. A source is an IPv4 address,
/// or an IPv6 /64 (one host usually owns a whole /64, so counting single
/// IPv6 addresses would give it 2^64 tries). The table is cleared every
/// window and capped; once it is full, every source not in it shares one
/// overflow count, so an attacker cycling addresses is still limited instead
/// of let through unchecked.
final class AuthGuard {
    private let passwordDigest: [UInt8]?
    let limit: Int
    private let windowSeconds: Double
    private var windowStart: Double = 0
    private var failures: [Source: Int] = [:]
    /// Failures of sources that found the table full.
    private var overflowFailures = 0
    let maxTrackedSources: Int

    /// An IPv4 address (IPv4-mapped form) or an IPv6 /64.
    struct Source: Hashable {
        let high: UInt64
        let low: UInt64

        init(_ peer: PeerAddress) {
            var bytes = peer.address
            let mapped = withUnsafeBytes(of: &bytes) { raw in
                raw[0..<10].allSatisfy { $0 == 0 } && raw[10] == 0xff && raw[11] == 0xff
            }
            high = peer.address.0
            low = mapped ? peer.address.1 : 0
        }
    }

    init(password: String?, failuresPerMinute: Int, maxTrackedSources: Int = 65536) {
        if let password, !password.isEmpty {
            passwordDigest = AuthGuard.sha256(Array(password.utf8))
        } else {
            passwordDigest = nil
        }
        limit = failuresPerMinute
        windowSeconds = 60
        self.maxTrackedSources = maxTrackedSources
    }

    /// The server has a password (`AUTH` set and non-empty).
    var isEnabled: Bool { passwordDigest != nil }

    /// Whether `candidate` equals the password, in constant time.
    func matches(_ candidate: [UInt8]) -> Bool {
        guard let passwordDigest else { return false }
        let digest = AuthGuard.sha256(candidate)
        return digest.withUnsafeBytes { a in
            passwordDigest.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, 32) == 0 }
        }
    }

    /// True when `peer`'s source has used up its failed attempts for this window.
    func isBlocked(_ peer: PeerAddress, now: Double) -> Bool {
        rollWindow(now)
        guard limit > 0 else { return false }
        let source = Source(peer)
        if let count = failures[source] { return count >= limit }
        return failures.count >= maxTrackedSources && overflowFailures >= limit
    }

    /// Counts one failed attempt (a wrong credential) from `peer`.
    func recordFailure(_ peer: PeerAddress, now: Double) {
        rollWindow(now)
        let source = Source(peer)
        if failures[source] == nil && failures.count >= maxTrackedSources {
            overflowFailures += 1
            return
        }
        failures[source, default: 0] += 1
    }

    private func rollWindow(_ now: Double) {
        if now - windowStart >= windowSeconds {
            windowStart = now
            failures.removeAll(keepingCapacity: false)
            overflowFailures = 0
        }
    }

    private static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBytes { SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &digest) }
        return digest
    }
}
