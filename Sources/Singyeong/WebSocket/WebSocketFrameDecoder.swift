/// RFC 6455 opcodes. Values 0x3–0x7 and 0xB–0xF are reserved and have no
/// case, so `init(rawValue:)` failing is exactly the "unknown opcode" check.
enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Control frames (high opcode bit set) may interleave with fragments and
    /// have their own size and FIN rules.
    @inline(__always)
    var isControl: Bool { rawValue & 0x08 != 0 }
}

/// Close codes (RFC 6455 §7.4.1). A struct rather than an enum because peers
/// may send any registered or private-use code, not only the ones we name.
struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable {
    var rawValue: UInt16

    init(rawValue: UInt16) { self.rawValue = rawValue }

    static let normal = WebSocketCloseCode(rawValue: 1000)
    static let goingAway = WebSocketCloseCode(rawValue: 1001)
    static let protocolError = WebSocketCloseCode(rawValue: 1002)
    /// Invalid UTF-8 in a text message or close reason.
    static let invalidPayload = WebSocketCloseCode(rawValue: 1007)
    static let policyViolation = WebSocketCloseCode(rawValue: 1008)
    static let messageTooBig = WebSocketCloseCode(rawValue: 1009)
    static let internalError = WebSocketCloseCode(rawValue: 1011)

    /// Whether a peer may put this code on the wire. 1004–1006 and 1015 are
    /// reserved for local use; 1012–1014 were registered after RFC 6455 and are
    /// accepted (as Autobahn expects); 3000–4999 are for libraries and apps.
    static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}

/// What the assembler hands to its caller: whole messages and control frames,
/// never raw frames, so the connection code has no fragmentation logic.
/// Pointers are valid only during the callback (they point into the caller's
/// read buffer, or into the assembler's fragment buffer which is freed after).
enum WebSocketEvent {
    /// A complete text (already UTF-8 validated) or binary message.
    case message(opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer)
    case ping(UnsafeRawBufferPointer)
    case pong(UnsafeRawBufferPointer)
    /// `code` is nil when the close frame had an empty body. The code is
    /// already checked to be valid on the wire and the reason to be UTF-8.
    case close(code: UInt16?, reason: UnsafeRawBufferPointer)
}

/// Why decoding stopped. The connection must be closed with `closeCode`
/// (1002, 1007 or 1009); `reason` is a fixed text for the log line (string
/// literals, so creating one never allocates).
struct WebSocketProtocolError: Error, Equatable, Sendable {
    var closeCode: WebSocketCloseCode
    var reason: String

    init(closeCode: WebSocketCloseCode, reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    static let reservedBitsSet = WebSocketProtocolError(closeCode: .protocolError, reason: "reserved bits set")
    static let unknownOpcode = WebSocketProtocolError(closeCode: .protocolError, reason: "unknown opcode")
    static let unmaskedFrame = WebSocketProtocolError(closeCode: .protocolError, reason: "unmasked client frame")
    static let fragmentedControlFrame = WebSocketProtocolError(
        closeCode: .protocolError, reason: "fragmented control frame")
    static let controlFrameTooLong = WebSocketProtocolError(
        closeCode: .protocolError, reason: "control frame payload over 125 bytes")
    static let unexpectedContinuation = WebSocketProtocolError(
        closeCode: .protocolError, reason: "continuation frame without a message in progress")
    static let expectedContinuation = WebSocketProtocolError(
        closeCode: .protocolError, reason: "new data frame while a fragmented message is in progress")
    static let invalidLength = WebSocketProtocolError(
        closeCode: .protocolError, reason: "64-bit payload length with the most significant bit set")
    static let invalidCloseBody = WebSocketProtocolError(closeCode: .protocolError, reason: "close frame body of 1 byte")
    static let invalidCloseCode = WebSocketProtocolError(closeCode: .protocolError, reason: "invalid close code")
    static let invalidUTF8 = WebSocketProtocolError(closeCode: .invalidPayload, reason: "invalid UTF-8 in text message")
    static let invalidCloseReason = WebSocketProtocolError(
        closeCode: .invalidPayload, reason: "invalid UTF-8 in close reason")
    static let messageTooBig = WebSocketProtocolError(closeCode: .messageTooBig, reason: "message too big")
}

/// Per-connection decoding state: the fragmented message in progress (its
/// opcode, bytes and UTF-8 state) and what the caller must buffer next.
///
/// The common case, a whole unfragmented message in the read buffer, costs no
/// allocation and no copy: the payload is unmasked in place and the event
/// points into the caller's buffer. Only fragmented messages are copied, into
/// a buffer that exists only while such a message is in progress.
///
/// Protocol choices: non-minimal length encodings are accepted (RFC 6455 says
/// the minimum MUST be used, but rejecting gains nothing and some clients get
/// it wrong); after a close frame every later byte is ignored, since §5.5.1
/// lets the peer send nothing after it. Header violations are reported as soon
/// as the offending header bytes are present, before the rest of the frame
/// arrives; UTF-8 is checked once a whole frame is present (frame granularity,
/// bounded by `maxMessageSize`).
///
/// Do not copy an assembler with a message in progress: copies share the
/// fragment buffer.
struct WebSocketMessageAssembler {
    /// Largest message (sum of fragments) we accept; larger is 1009. The
    /// gateway raises it once a client has identified (before that only
    /// small messages are accepted); it is never lowered mid-message.
    var maxMessageSize: Int
    /// Whole frames (data fragments and control frames) decoded so far: the
    /// idle timeout counts frames, not bytes, so a peer trickling a partial
    /// frame cannot keep its connection open (protocol.md §5.3).
    private(set) var framesReceived = 0

    /// Opcode (.text/.binary) of the fragmented message in progress, if any.
    private var messageOpcode: WebSocketOpcode?
    /// Payload bytes received so far for the fragmented message in progress.
    private var messageLength = 0
    /// Bytes of the fragmented message in progress; nil while none has a byte.
    private var fragments: FragmentBuffer?
    /// UTF-8 state of the fragmented text message in progress.
    private var utf8 = UTF8Validator()
    /// Total size of the partial frame left unconsumed by the last `consume`.
    private var pendingFrameLength: Int?
    private var closeReceived = false

    init(maxMessageSize: Int) {
        precondition(maxMessageSize >= 0, "negative maxMessageSize")
        self.maxMessageSize = maxMessageSize
    }

    /// How many bytes in total the caller should have buffered to complete the
    /// frame it is waiting for (header + payload of the partial frame at the
    /// start of the unconsumed bytes), or nil if unknown (header incomplete, or
    /// nothing left over). Lets the caller size its read buffer once for a
    /// large frame instead of growing it repeatedly.
    var bytesNeededHint: Int? { pendingFrameLength }

    /// Frees the fragment buffer and forgets all state (connection closing).
    mutating func reset() {
        messageOpcode = nil
        messageLength = 0
        fragments = nil
        utf8.reset()
        pendingFrameLength = nil
        closeReceived = false
    }

    /// Decodes as many complete frames as `buffer` holds, unmasking in place,
    /// calling `onEvent` for each complete message / control frame. Returns the
    /// number of bytes consumed (whole frames only: a partial frame at the end
    /// is left for the caller to keep and present again with more bytes
    /// appended; its bytes are not modified). After a close frame the rest of
    /// `buffer`, and everything presented later, is reported consumed and
    /// ignored. Throws on the first violation; nothing after it is processed
    /// and the connection must be closed (the assembler is then unusable until
    /// `reset()`).
    ///
    /// `onEvent` must not access this assembler (it is being mutated: an
    /// exclusivity violation would trap).
    mutating func consume(
        _ buffer: UnsafeMutableRawBufferPointer,
        _ onEvent: (WebSocketEvent) -> Void
    ) throws(WebSocketProtocolError) -> Int {
        pendingFrameLength = nil
        guard let base = buffer.baseAddress else { return 0 }
        let count = buffer.count
        if closeReceived { return count }
        var offset = 0
        frames: while offset < count {
            let frame = base + offset
            let available = count &- offset

            // Byte 0: FIN, RSV1-3, opcode. Checked before anything else arrives.
            let byte0 = frame.load(as: UInt8.self)
            if byte0 & 0x70 != 0 { throw .reservedBitsSet }
            guard let opcode = WebSocketOpcode(rawValue: byte0 & 0x0F) else { throw .unknownOpcode }
            let fin = byte0 & 0x80 != 0
            let isControl = opcode.isControl
            if isControl {
                if !fin { throw .fragmentedControlFrame }
            } else if opcode == .continuation {
                if messageOpcode == nil { throw .unexpectedContinuation }
            } else if messageOpcode != nil {
                throw .expectedContinuation
            }

            // Byte 1: MASK, 7-bit length; then the extended length.
            if available < 2 { break frames }
            let byte1 = frame.load(fromByteOffset: 1, as: UInt8.self)
            if byte1 & 0x80 == 0 { throw .unmaskedFrame }
            let length7 = byte1 & 0x7F
            let headerLength: Int  // including the 4-byte masking key
            let payloadLength: UInt64
            switch length7 {
            case 126:
                if isControl { throw .controlFrameTooLong }
                if available < 4 { break frames }
                payloadLength = UInt64(UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
                headerLength = 8
            case 127:
                if isControl { throw .controlFrameTooLong }
                if available < 10 { break frames }
                payloadLength = UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
                if payloadLength & (1 << 63) != 0 { throw .invalidLength }
                headerLength = 14
            default:
                payloadLength = UInt64(length7)
                headerLength = 6
            }
            // Decided from the header alone, so a peer cannot make us buffer a
            // frame we would reject anyway. messageLength <= maxMessageSize.
            if !isControl && payloadLength > UInt64(maxMessageSize &- messageLength) {
                throw .messageTooBig
            }
            let payloadCount = Int(payloadLength)  // <= maxMessageSize or <= 125
            if available < headerLength || available &- headerLength < payloadCount {
                let (total, overflow) = headerLength.addingReportingOverflow(payloadCount)
                pendingFrameLength = overflow ? Int.max : total
                break frames
            }

            // The whole frame is here: unmask in place and dispatch.
            let payload = frame + headerLength
            WebSocketMessageAssembler.unmask(payload, count: payloadCount, key: frame + (headerLength &- 4))
            let bytes = UnsafeRawBufferPointer(start: payload, count: payloadCount)
            offset &+= headerLength &+ payloadCount
            framesReceived &+= 1

            switch opcode {
            case .text, .binary:
                if fin {
                    if opcode == .text {
                        var validator = UTF8Validator()
                        if !validator.validate(bytes) || !validator.isAtCodePointBoundary { throw .invalidUTF8 }
                    }
                    onEvent(.message(opcode: opcode, payload: bytes))
                } else {
                    messageOpcode = opcode
                    if opcode == .text {
                        utf8.reset()
                        if !utf8.validate(bytes) { throw .invalidUTF8 }
                    }
                    appendFragment(bytes)
                }
            case .continuation:
                let messageOpcode = self.messageOpcode.unsafelyUnwrapped  // checked at byte 0
                if messageOpcode == .text && !utf8.validate(bytes) { throw .invalidUTF8 }
                appendFragment(bytes)
                if fin {
                    if messageOpcode == .text && !utf8.isAtCodePointBoundary { throw .invalidUTF8 }
                    let message = UnsafeRawBufferPointer(start: fragments?.base, count: messageLength)
                    onEvent(.message(opcode: messageOpcode, payload: message))
                    finishMessage()
                }
            case .ping:
                onEvent(.ping(bytes))
            case .pong:
                onEvent(.pong(bytes))
            case .close:
                let (code, reason) = try WebSocketMessageAssembler.parseCloseBody(bytes)
                closeReceived = true
                onEvent(.close(code: code, reason: reason))
                return count
            }
        }
        return offset
    }

    /// Checks a close body per §5.5.1 / §7.4: empty, or a wire-valid code plus
    /// a UTF-8 reason.
    private static func parseCloseBody(
        _ body: UnsafeRawBufferPointer
    ) throws(WebSocketProtocolError) -> (UInt16?, UnsafeRawBufferPointer) {
        if body.count == 0 { return (nil, body) }
        if body.count == 1 { throw .invalidCloseBody }
        let code = UInt16(body[0]) << 8 | UInt16(body[1])
        if !WebSocketCloseCode.isValidOnWire(code) { throw .invalidCloseCode }
        let reason = UnsafeRawBufferPointer(rebasing: body[2...])
        var validator = UTF8Validator()
        if !validator.validate(reason) || !validator.isAtCodePointBoundary { throw .invalidCloseReason }
        return (code, reason)
    }

    /// Copies one data fragment into the message buffer; the size limit was
    /// already enforced from the frame header.
    private mutating func appendFragment(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        if fragments == nil {
            fragments = FragmentBuffer(minimumCapacity: bytes.count, limit: maxMessageSize)
        }
        fragments.unsafelyUnwrapped.append(bytes, limit: maxMessageSize)
        messageLength &+= bytes.count
    }

    /// Drops the completed message's buffer so an idle connection holds no memory.
    private mutating func finishMessage() {
        messageOpcode = nil
        messageLength = 0
        fragments = nil
        utf8.reset()
    }

    /// XORs the payload with the masking key in place, 32 then 8 bytes at a
    /// time. The key read as a UInt32 holds its 4 bytes in memory order, so
    /// doubling it into a UInt64 lines up with unaligned 8-byte loads on
    /// either endianness.
    @inline(__always)
    static func unmask(_ payload: UnsafeMutableRawPointer, count: Int, key: UnsafeRawPointer) {
        let mask = key.loadUnaligned(as: UInt32.self)
        if mask == 0 { return }
        let wideMask = UInt64(mask) | UInt64(mask) << 32
        var i = 0
        while count &- i >= 32 {
            let a = payload.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = payload.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
            let c = payload.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self)
            let d = payload.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self)
            payload.storeBytes(of: a ^ wideMask, toByteOffset: i, as: UInt64.self)
            payload.storeBytes(of: b ^ wideMask, toByteOffset: i &+ 8, as: UInt64.self)
            payload.storeBytes(of: c ^ wideMask, toByteOffset: i &+ 16, as: UInt64.self)
            payload.storeBytes(of: d ^ wideMask, toByteOffset: i &+ 24, as: UInt64.self)
            i &+= 32
        }
        while count &- i >= 8 {
            let a = payload.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            payload.storeBytes(of: a ^ wideMask, toByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        while i < count {
            let byte = payload.load(fromByteOffset: i, as: UInt8.self)
            let keyByte = key.load(fromByteOffset: i & 3, as: UInt8.self)
            payload.storeBytes(of: byte ^ keyByte, toByteOffset: i, as: UInt8.self)
            i &+= 1
        }
    }
}

/// Heap bytes of one fragmented message. A class so that its deinit frees the
/// memory even if a connection is dropped without `reset()`; the assembler
/// drops it as soon as the message completes. Keeps `InputBuffer.padding`
/// spare bytes after the data because JSON parsers (simdjson) may read that
/// far past the end, as they do with the connection's own input buffer.
private final class FragmentBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var count = 0

    init(minimumCapacity: Int, limit: Int) {
        // Start at 4 KiB (or the limit) so small fragments do not regrow often.
        capacity = max(minimumCapacity, min(4096, limit))
        base = .allocate(byteCount: capacity &+ InputBuffer.padding, alignment: 16)
    }

    deinit { base.deallocate() }

    /// Appends, growing geometrically but never beyond `limit` (the message
    /// size limit, which `count + bytes.count` never exceeds).
    func append(_ bytes: UnsafeRawBufferPointer, limit: Int) {
        let needed = count &+ bytes.count
        if needed > capacity {
            var newCapacity = capacity > limit / 2 ? limit : capacity &* 2
            if newCapacity < needed { newCapacity = needed }
            let grown = UnsafeMutableRawPointer.allocate(
                byteCount: newCapacity &+ InputBuffer.padding, alignment: 16)
            grown.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = grown
            capacity = newCapacity
        }
        (base + count).copyMemory(from: bytes.baseAddress.unsafelyUnwrapped, byteCount: bytes.count)
        count = needed
    }
}
