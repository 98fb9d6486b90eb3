/// Writes server-to-client frame headers (RFC 6455 §5.2).
///
/// Only the header is produced so the caller can place it directly in front
/// of a payload it already has in its output buffer (no copy of the payload,
/// no per-frame allocation). Server frames are never masked (§5.1), so the
/// header is 2, 4 or 10 bytes and always uses the minimal length encoding.
enum WebSocketFrameEncoder {
    /// Largest close reason that fits a control frame: 125 minus the 2-byte code.
    static let maxCloseReasonLength = 123

    /// Header length for a server frame with this payload length (2, 4 or 10),
    /// so the caller can reserve room before writing the payload.
    @inline(__always)
    static func headerLength(payloadLength: Int) -> Int {
        if payloadLength <= 125 { return 2 }
        if payloadLength <= 0xFFFF { return 4 }
        return 10
    }

    /// Writes the header at `destination` (which has at least
    /// `headerLength(payloadLength:)` bytes, any alignment); returns the bytes
    /// written. `payloadLength` must not be negative.
    @inline(__always)
    @discardableResult
    static func writeHeader(
        opcode: WebSocketOpcode,
        fin: Bool = true,
        payloadLength: Int,
        to destination: UnsafeMutableRawPointer
    ) -> Int {
        precondition(payloadLength >= 0, "negative WebSocket payload length")
        destination.storeBytes(of: (fin ? 0x80 : 0) | opcode.rawValue, as: UInt8.self)
        if payloadLength <= 125 {
            destination.storeBytes(of: UInt8(truncatingIfNeeded: payloadLength), toByteOffset: 1, as: UInt8.self)
            return 2
        }
        if payloadLength <= 0xFFFF {
            destination.storeBytes(of: 126, toByteOffset: 1, as: UInt8.self)
            destination.storeBytes(
                of: UInt16(truncatingIfNeeded: payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            return 4
        }
        destination.storeBytes(of: 127, toByteOffset: 1, as: UInt8.self)
        destination.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 2, as: UInt64.self)
        return 10
    }

    /// A complete close frame body: 2-byte big-endian code + reason, the reason
    /// cut to 123 bytes at a UTF-8 boundary so the frame stays a legal control
    /// frame and the peer's UTF-8 check passes. Closing is rare, so an array
    /// allocation is fine here.
    static func closePayload(code: WebSocketCloseCode, reason: StaticString = "") -> [UInt8] {
        reason.withUTF8Buffer { makeClosePayload(code: code, reason: UnsafeRawBufferPointer($0)) }
    }

    /// Same as the `StaticString` form, for reasons built at run time; the
    /// bytes should be valid UTF-8 (truncation only respects boundaries then).
    static func closePayload(code: WebSocketCloseCode, reason: [UInt8]) -> [UInt8] {
        reason.withUnsafeBytes { makeClosePayload(code: code, reason: $0) }
    }

    private static func makeClosePayload(code: WebSocketCloseCode, reason: UnsafeRawBufferPointer) -> [UInt8] {
        var length = min(reason.count, maxCloseReasonLength)
        if length < reason.count {
            // The first dropped byte is a continuation byte: the code point it
            // belongs to straddles the cut, so drop that whole code point.
            while length > 0 && reason[length] & 0xC0 == 0x80 { length -= 1 }
        }
        var payload = [UInt8]()
        payload.reserveCapacity(2 + length)
        payload.append(UInt8(truncatingIfNeeded: code.rawValue >> 8))
        payload.append(UInt8(truncatingIfNeeded: code.rawValue))
        payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: reason[0..<length]))
        return payload
    }
}
