import COpenSSL

/// Password checks for IDENTIFY and the REST API (protocol.md §4.3,
/// rest.md §2.1), plus the brute-force limit the original lacked.
///
/// Comparison is constant-time: both sides are hashed to SHA-256 first, so the
/// comparison neither stops at the first differing byte nor leaks the
/// password's length, then `CRYPTO_memcmp` compares the digests.
///
/// The limit counts failed attempts per source address in fixed one-minute
/// windows; past `limit` failures an address is refused until its window
/// ends. The table is cleared every window and capped in size, so an attacker
/// cycling addresses cannot grow it without bound.
final class AuthGuard {
    private let passwordDigest: [UInt8]?
    let limit: Int
    private let windowSeconds: Double
    private var windowStart: Double = 0
    private var failures: [String: Int] = [:]
    private let maxTrackedAddresses = 65536

    init(password: String?, failuresPerMinute: Int) {
        if let password, !password.isEmpty {
            passwordDigest = AuthGuard.sha256(Array(password.utf8))
        } else {
            passwordDigest = nil
        }
        limit = failuresPerMinute
        windowSeconds = 60
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

    /// True when `address` has used up its failed attempts for this window.
    func isBlocked(_ address: String, now: Double) -> Bool {
        rollWindow(now)
        guard limit > 0 else { return false }
        return (failures[address] ?? 0) >= limit
    }

    /// Counts one failed attempt from `address`.
    func recordFailure(_ address: String, now: Double) {
        rollWindow(now)
        if failures[address] == nil && failures.count >= maxTrackedAddresses { return }
        failures[address, default: 0] += 1
    }

    private func rollWindow(_ now: Double) {
        if now - windowStart >= windowSeconds {
            windowStart = now
            failures.removeAll(keepingCapacity: false)
        }
    }

    private static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBytes { SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &digest) }
        return digest
    }
}
