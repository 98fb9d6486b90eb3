/// Incremental, allocation-free UTF-8 validator.
///
/// Text messages reach us in pieces (fragments, and reads that end anywhere),
/// so a code point can be split across calls; the validator therefore carries
/// the state of an unfinished sequence from one `validate` call to the next.
/// It is strict per RFC 3629 (what RFC 6455 requires for text): it rejects
/// overlong encodings, UTF-16 surrogates (U+D800–U+DFFF), code points above
/// U+10FFFF and stray continuation bytes, the same set `String(validating:)`
/// rejects. Failure is sticky until `reset()`.
///
/// The module's only UTF-8 validator: WebSocket text frames use it
/// incrementally, the MessagePack decoder and transcoder through the one-shot
/// `isValid(_:)`. It lives in Codec, the lowest layer that needs it.
struct UTF8Validator {
    /// Continuation bytes still expected for the sequence in progress (0–3).
    private var remaining: UInt8 = 0
    /// Allowed range of the next continuation byte. Only the first
    /// continuation byte after certain lead bytes is narrower than 0x80–0xBF;
    /// narrowing it is how overlongs, surrogates and > U+10FFFF are rejected
    /// without decoding the scalar value.
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF
    private var failed = false

    init() {}

    /// One-shot check of a complete buffer (a MessagePack string, a
    /// transcoded document): valid, and not ending inside a code point.
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var validator = UTF8Validator()
        return validator.validate(bytes) && validator.isAtCodePointBoundary
    }

    /// True when the bytes seen so far end exactly after a complete code point
    /// (and nothing invalid was seen): a text message may only end here.
    var isAtCodePointBoundary: Bool { remaining == 0 && !failed }

    /// Forgets all state, for the next message.
    mutating func reset() {
        remaining = 0
        lower = 0x80
        upper = 0xBF
        failed = false
    }

    /// Validates the next piece of the stream. Returns false as soon as an
    /// invalid sequence is seen, and keeps returning false until `reset()`.
    /// A sequence left unfinished at the end of `bytes` is not an error here;
    /// check `isAtCodePointBoundary` when the message ends.
    mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if failed { return false }
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        // Work on locals so the hot loop does not write through `self`.
        var remaining = self.remaining
        var lower = self.lower
        var upper = self.upper
        var i = 0
        while i < count {
            if remaining == 0 {
                // ASCII fast path: 16, then 8 bytes per step while no byte has
                // its high bit set. JSON payloads are almost entirely ASCII.
                while count &- i >= 16 {
                    let a = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    let b = base.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
                    if (a | b) & 0x8080_8080_8080_8080 != 0 { break }
                    i &+= 16
                }
                if count &- i >= 8,
                   base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                    i &+= 8
                    continue
                }
                if i == count { break }
                let byte = base.load(fromByteOffset: i, as: UInt8.self)
                i &+= 1
                if byte < 0x80 { continue }
                switch byte {
                case 0xC2...0xDF:
                    remaining = 1
                case 0xE0:
                    remaining = 2; lower = 0xA0          // no overlong 3-byte forms
                case 0xE1...0xEC, 0xEE...0xEF:
                    remaining = 2
                case 0xED:
                    remaining = 2; upper = 0x9F          // no surrogates
                case 0xF0:
                    remaining = 3; lower = 0x90          // no overlong 4-byte forms
                case 0xF1...0xF3:
                    remaining = 3
                case 0xF4:
                    remaining = 3; upper = 0x8F          // nothing above U+10FFFF
                default:
                    // 0x80–0xC1 (stray continuation, overlong 2-byte) and 0xF5–0xFF.
                    self.failed = true
                    return false
                }
            } else {
                let byte = base.load(fromByteOffset: i, as: UInt8.self)
                i &+= 1
                if byte < lower || byte > upper {
                    self.failed = true
                    return false
                }
                remaining &-= 1
                lower = 0x80
                upper = 0xBF
            }
        }
        self.remaining = remaining
        self.lower = lower
        self.upper = upper
        return true
    }
}
