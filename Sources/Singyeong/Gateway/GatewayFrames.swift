/// Server frames of the gateway protocol that do not depend on a message
/// (protocol.md §3–4): built from a few pre-encoded parts plus the timestamp,
/// for either encoding, without Foundation.
struct GatewayFrames {
    let heartbeatInterval: Int

    init(heartbeatInterval: Int) { self.heartbeatInterval = heartbeatInterval }

    /// HELLO: `{"op":0,"d":{"heartbeat_interval":N},"t":null,"ts":MS}`
    /// (JSON text frame) or the same map in MessagePack (binary frame).
    func hello(encoding: WebSocketHandshake.Encoding, timestamp: Int64) -> OutboundBytes {
        var payload: [UInt8] = []
        payload.reserveCapacity(80)
        switch encoding {
        case .json:
            payload.append(contentsOf: "{\"op\":0,\"d\":{\"heartbeat_interval\":".utf8)
            JSONWriter.appendInteger(Int64(heartbeatInterval), to: &payload)
            payload.append(contentsOf: "},\"t\":null,\"ts\":".utf8)
            JSONWriter.appendInteger(timestamp, to: &payload)
            payload.append(UInt8(ascii: "}"))
        case .msgpack:
            MessagePackWriter.appendMapHeader(4, to: &payload)
            MessagePackWriter.appendString("op", to: &payload)
            MessagePackWriter.appendInteger(0, to: &payload)
            MessagePackWriter.appendString("d", to: &payload)
            MessagePackWriter.appendMapHeader(1, to: &payload)
            MessagePackWriter.appendString("heartbeat_interval", to: &payload)
            MessagePackWriter.appendInteger(Int64(heartbeatInterval), to: &payload)
            MessagePackWriter.appendString("t", to: &payload)
            MessagePackWriter.appendNil(to: &payload)
            MessagePackWriter.appendString("ts", to: &payload)
            MessagePackWriter.appendInteger(timestamp, to: &payload)
        }
        return payload.withUnsafeBytes { WebSocketFrames.make(opcode: encoding == .json ? .text : .binary, payload: $0) }
    }
}

/// Appends JSON scalars to a byte array without `String` formatting.
enum JSONWriter {
    static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 {
            out.append(UInt8(ascii: "-"))
            appendUnsigned(value.magnitude, to: &out)
        } else {
            appendUnsigned(UInt64(value), to: &out)
        }
    }

    static func appendUnsigned(_ value: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ 20 digits
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            } while v > 0
            out.append(contentsOf: buffer[(24 - n)...])
        }
    }
}

/// Appends MessagePack values to a byte array (the smallest encoding for each
/// value, as the format recommends).
enum MessagePackWriter {
    static func appendMapHeader(_ count: Int, to out: inout [UInt8]) {
        if count < 16 { out.append(0x80 | UInt8(count)) }
        else if count <= 0xFFFF { out.append(0xDE); appendBigEndian(UInt16(count), to: &out) }
        else { out.append(0xDF); appendBigEndian(UInt32(count), to: &out) }
    }

    static func appendString(_ s: StaticString, to out: inout [UInt8]) {
        let count = s.utf8CodeUnitCount
        if count < 32 { out.append(0xA0 | UInt8(count)) }
        else if count <= 0xFF { out.append(0xD9); out.append(UInt8(count)) }
        else if count <= 0xFFFF { out.append(0xDA); appendBigEndian(UInt16(count), to: &out) }
        else { out.append(0xDB); appendBigEndian(UInt32(count), to: &out) }
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: count))
    }

    static func appendNil(to out: inout [UInt8]) { out.append(0xC0) }

    static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value >= 0 {
            if value < 128 { out.append(UInt8(value)) }
            else if value <= 0xFF { out.append(0xCC); out.append(UInt8(value)) }
            else if value <= 0xFFFF { out.append(0xCD); appendBigEndian(UInt16(value), to: &out) }
            else if value <= 0xFFFF_FFFF { out.append(0xCE); appendBigEndian(UInt32(value), to: &out) }
            else { out.append(0xCF); appendBigEndian(UInt64(value), to: &out) }
        } else {
            if value >= -32 { out.append(UInt8(bitPattern: Int8(value))) }
            else if value >= -128 { out.append(0xD0); out.append(UInt8(bitPattern: Int8(value))) }
            else if value >= -32768 { out.append(0xD1); appendBigEndian(UInt16(bitPattern: Int16(value)), to: &out) }
            else if value >= -2_147_483_648 { out.append(0xD2); appendBigEndian(UInt32(bitPattern: Int32(value)), to: &out) }
            else { out.append(0xD3); appendBigEndian(UInt64(bitPattern: value), to: &out) }
        }
    }

    static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
    }
}
