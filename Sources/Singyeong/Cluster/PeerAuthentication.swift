import COpenSSL

/// The peer-link handshake's cryptography: random nonces and HMAC-SHA256
/// proofs over COOKIE. The secret never crosses the wire; each side proves it
/// knows it by MACing the other side's fresh nonce together with its own
/// identity and role, so a recorded proof is useless on another link.
enum PeerAuthentication {
    /// 32 random bytes as 64 hex characters.
    static func makeNonce() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        _ = RAND_bytes(&bytes, 32)
        return hex(bytes)
    }

    /// A new node id: 128 random bits, 32 lower-case hex characters (cluster.md §2.5).
    static func makeNodeID() -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        _ = RAND_bytes(&bytes, 16)
        return hex(bytes)
    }

    /// Which side of the link a proof comes from: a dialer's proof can never
    /// pass as an acceptor's (no reflecting a node's own proof back at it).
    enum Role: String { case dialer, acceptor }

    /// The proof `sender` sends: HMAC(cookie, version, role, sender id and
    /// nonce, receiver id and nonce, channel binding), every field length-
    /// prefixed so no two field lists give the same message. The channel
    /// binding is the TLS session's exported keying material (empty on plain
    /// TCP): a relay that terminates TLS separately toward each side cannot
    /// produce a proof valid on either session.
    static func proof(cookie: String, role: Role, senderID: String, senderNonce: String, receiverID: String, receiverNonce: String,
                      channelBinding: String = "") -> String {
        var message = Array("singyeong-peer-v\(PeerFrameCodec.protocolVersion)".utf8)
        for field in [role.rawValue, senderID, senderNonce, receiverID, receiverNonce, channelBinding] {
            message.append(contentsOf: Array("|\(field.utf8.count):".utf8))
            message.append(contentsOf: Array(field.utf8))
        }
        let key = Array(cookie.utf8)
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        _ = key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                HMAC(EVP_sha256(), k.baseAddress, Int32(key.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count, &out, &length)
            }
        }
        return hex(Array(out[0..<Int(length)]))
    }

    /// Constant-time comparison of two proofs.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count, !x.isEmpty else { return false }
        return x.withUnsafeBytes { p in y.withUnsafeBytes { q in CRYPTO_memcmp(p.baseAddress, q.baseAddress, x.count) == 0 } }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
