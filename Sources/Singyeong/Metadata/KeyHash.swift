/// Consistent hashing for a query's `key` (`query.md` §8): 64-bit FNV-1a over
/// the key's UTF-8 bytes, modulo the candidate count. Chosen because it is
/// trivially reproducible by other implementations (test vectors in §8);
/// the caller must first sort candidates by (application_id, client_id)
/// bytewise, see `candidateLess`.
enum KeyHash {
    static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    /// FNV-1a 64: XOR the byte, then multiply (wrapping).
    static func fnv1a64(_ key: String) -> UInt64 {
        var hash = offsetBasis
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* prime
        }
        return hash
    }

    /// Index into the sorted candidate list; `count` must be positive.
    static func index(forKey key: String, count: Int) -> Int {
        precondition(count > 0, "no candidates to hash over")
        return Int(fnv1a64(key) % UInt64(count))
    }

    /// Byte-wise (UTF-8) less-than; Swift's `<` on String is not bytewise.
    static func bytewiseLess(_ a: String, _ b: String) -> Bool {
        ValueComparison.bytewise(a, b) < 0
    }

    /// Candidate order for hashing: application_id, then client_id, bytewise.
    static func candidateLess(_ a: (applicationID: String, clientID: String),
                              _ b: (applicationID: String, clientID: String)) -> Bool {
        let c = ValueComparison.bytewise(a.applicationID, b.applicationID)
        if c != 0 { return c < 0 }
        return ValueComparison.bytewise(a.clientID, b.clientID) < 0
    }
}
