/// The bytes one queued message is kept as outside the node (the Redis
/// store's `msgs` hash): its encoding, nonce, target and payload exactly as
/// the producer sent them, so a node that loads it later parses the target
/// again and forwards the payload unchanged.
///
/// Layout: version (1), encoding (0 JSON, 1 MessagePack), nonce flag (0 or
/// 1), then the nonce and the target each as a 4-byte big-endian length and
/// the bytes, then the payload (the rest). Hand-written: four fields do not
/// need a serialization library, and the decoder is bounds-checked and fuzzed
/// (`Fuzz/StoredQueueMessageFuzz.swift`), since Redis is a peer too.
struct StoredQueueMessage: Equatable {
    static let version: UInt8 = 1

    let encoding: PayloadEncoding
    let nonce: [UInt8]?
    let target: [UInt8]
    let payload: [UInt8]

    /// The parts of a message being stored, borrowed from the frame.
    struct Parts {
        let encoding: PayloadEncoding
        let nonce: UnsafeRawBufferPointer?
        let target: UnsafeRawBufferPointer
        let payload: UnsafeRawBufferPointer

        /// Appends the stored form to `out`.
        func encode(into out: inout [UInt8]) {
            out.reserveCapacity(out.count + 11 + (nonce?.count ?? 0) + target.count + payload.count)
            out.append(StoredQueueMessage.version)
            out.append(encoding == .json ? 0 : 1)
            out.append(nonce == nil ? 0 : 1)
            if let nonce { StoredQueueMessage.appendLength(nonce.count, to: &out); out.append(contentsOf: nonce) }
            StoredQueueMessage.appendLength(target.count, to: &out)
            out.append(contentsOf: target)
            out.append(contentsOf: payload)
        }
    }

    init(encoding: PayloadEncoding, nonce: [UInt8]?, target: [UInt8], payload: [UInt8]) {
        self.encoding = encoding
        self.nonce = nonce
        self.target = target
        self.payload = payload
    }

    /// Decodes the stored form; nil when it is not one (unknown version or
    /// encoding, a length past the end, an empty target or payload).
    init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 3, bytes[0] == StoredQueueMessage.version, bytes[1] <= 1, bytes[2] <= 1 else { return nil }
        encoding = bytes[1] == 0 ? .json : .msgpack
        var at = 3
        func field() -> [UInt8]? {
            guard bytes.count - at >= 4 else { return nil }
            let length = Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
            at += 4
            guard bytes.count - at >= length else { return nil }
            defer { at += length }
            return Array(bytes[at..<at + length])
        }
        if bytes[2] == 1 {
            guard let nonce = field() else { return nil }
            self.nonce = nonce
        } else {
            nonce = nil
        }
        guard let target = field(), !target.isEmpty, at < bytes.count else { return nil }
        self.target = target
        payload = Array(bytes[at...])
    }

    /// The stored form.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        nonce.withOptionalBytes { nonce in
            target.withUnsafeBytes { target in
                payload.withUnsafeBytes { payload in
                    Parts(encoding: encoding, nonce: nonce, target: target, payload: payload).encode(into: &out)
                }
            }
        }
        return out
    }

    fileprivate static func appendLength(_ n: Int, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: n >> 24))
        out.append(UInt8(truncatingIfNeeded: n >> 16))
        out.append(UInt8(truncatingIfNeeded: n >> 8))
        out.append(UInt8(truncatingIfNeeded: n))
    }
}

extension Optional where Wrapped == [UInt8] {
    /// The bytes of an optional array, as an optional buffer.
    func withOptionalBytes<R>(_ body: (UnsafeRawBufferPointer?) -> R) -> R {
        switch self {
        case .some(let bytes): return bytes.withUnsafeBytes { body($0) }
        case .none: return body(nil)
        }
    }
}
