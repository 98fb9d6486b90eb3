/// Transcoding straight from a `DocumentTape` subtree, for a recipient whose
/// encoding differs from the sender's (same-encoding delivery copies the
/// node's source span instead).
///
/// Both encoders reproduce the tape's structure exactly: member order, and
/// repeated object names too (they are all emitted; every reader keeps the
/// last, as `DocumentTape.value(_:)` does). Stdlib only.
extension DocumentTape {
    /// Appends node `i`'s subtree as JSON (RFC 8259). Strings are escaped;
    /// integers exact; doubles in the shortest form that round-trips, always
    /// with a '.' or an exponent so they re-parse as floats. NaN and ±infinity
    /// (possible only from MessagePack input) have no JSON form and become
    /// `null`.
    func appendJSON(_ i: Int, to out: inout [UInt8]) {
        let n = node(i)
        switch n.kind {
        case .null: JSONEmitter.appendNull(to: &out)
        case .bool: JSONEmitter.appendBool(n.bits != 0, to: &out)
        case .int: JSONEmitter.appendInt(Int64(bitPattern: n.bits), to: &out)
        case .uint: JSONEmitter.appendUInt(n.bits, to: &out)
        case .double: JSONEmitter.appendDouble(Double(bitPattern: n.bits), to: &out)
        case .string: withStringBytes(i) { JSONEmitter.appendString($0, to: &out) }
        case .array:
            out.append(UInt8(ascii: "["))
            var first = true
            for e in elements(of: i) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                appendJSON(e, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object:
            out.append(UInt8(ascii: "{"))
            var first = true
            for (k, v) in members(of: i) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                withStringBytes(k) { JSONEmitter.appendString($0, to: &out) }
                out.append(UInt8(ascii: ":"))
                appendJSON(v, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .unexpanded:
            preconditionFailure("transcoding an unexpanded node: decode its span first")
        }
    }

    /// Appends node `i`'s subtree as MessagePack: smallest integer and
    /// header encodings, strings as `str`, doubles as float64.
    func appendMessagePack(_ i: Int, to out: inout [UInt8]) {
        let n = node(i)
        switch n.kind {
        case .null: MessagePackEmitter.appendNil(to: &out)
        case .bool: MessagePackEmitter.appendBool(n.bits != 0, to: &out)
        case .int: MessagePackEmitter.appendInt(Int64(bitPattern: n.bits), to: &out)
        case .uint: MessagePackEmitter.appendUInt(n.bits, to: &out)
        case .double: MessagePackEmitter.appendDouble(Double(bitPattern: n.bits), to: &out)
        case .string: withStringBytes(i) { MessagePackEmitter.appendString($0, to: &out) }
        case .array:
            MessagePackEmitter.appendArrayHeader(Int(n.count), to: &out)
            for e in elements(of: i) { appendMessagePack(e, to: &out) }
        case .object:
            MessagePackEmitter.appendMapHeader(Int(n.count), to: &out)
            for (k, v) in members(of: i) {
                withStringBytes(k) { MessagePackEmitter.appendString($0, to: &out) }
                appendMessagePack(v, to: &out)
            }
        case .unexpanded:
            preconditionFailure("transcoding an unexpanded node: decode its span first")
        }
    }
}

/// Appends JSON tokens to a `ByteSink` without `String` formatting (except
/// for doubles, see `appendDouble`).
enum JSONEmitter {
    static func appendNull(to out: inout some ByteSink) { appendLiteral("null", to: &out) }
    static func appendBool(_ b: Bool, to out: inout some ByteSink) { appendLiteral(b ? "true" : "false", to: &out) }

    @inline(__always) private static func appendLiteral(_ s: StaticString, to out: inout some ByteSink) {
        out.append(contentsOf: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    static func appendInt(_ value: Int64, to out: inout some ByteSink) {
        if value < 0 {
            out.append(UInt8(ascii: "-"))
            appendUInt(value.magnitude, to: &out)
        } else {
            appendUInt(UInt64(value), to: &out)
        }
    }

    static func appendUInt(_ value: UInt64, to out: inout some ByteSink) {
        if value < 10 { return out.append(UInt8(ascii: "0") + UInt8(value)) }  // most small integers
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ 20 digits
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            } while v > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - n)...]))
        }
    }

    /// Shortest round-tripping form (Swift's `description`, which always has
    /// a '.' or an exponent for finite values, e.g. `1.0`, `1e-05`,
    /// `1e+16`). Non-finite values become `null`. The description is a small
    /// (inline, non-allocating) String for up to 15 characters; longer
    /// forms such as `0.30000000000000004` allocate once.
    static func appendDouble(_ value: Double, to out: inout some ByteSink) {
        guard value.isFinite else { return appendNull(to: &out) }
        var text = value.description
        text.withUTF8 { out.append(contentsOf: UnsafeRawBufferPointer($0)) }
    }

    private static let hex: StaticString = "0123456789abcdef"

    /// Appends `bytes` (valid UTF-8) as a quoted JSON string: `"` and `\`
    /// escaped, control characters as `\n`, `\t`, ... or `\u00XX`; everything
    /// else (including non-ASCII) verbatim.
    static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout some ByteSink) {
        out.append(UInt8(ascii: "\""))
        var runStart = 0
        var i = 0
        let count = bytes.count
        while i < count {
            let b = bytes[i]
            if b >= 0x20 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") { i += 1; continue }
            if runStart < i { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i])) }
            out.append(UInt8(ascii: "\\"))
            switch b {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            default:
                out.append(UInt8(ascii: "u")); out.append(UInt8(ascii: "0")); out.append(UInt8(ascii: "0"))
                out.append(hex.utf8Start[Int(b >> 4)]); out.append(hex.utf8Start[Int(b & 0xF)])
            }
            i += 1
            runStart = i
        }
        if runStart < count { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<count])) }
        out.append(UInt8(ascii: "\""))
    }
}

/// Appends MessagePack values to a byte array, choosing the smallest encoding.
enum MessagePackEmitter {
    static func appendNil(to out: inout [UInt8]) { out.append(0xC0) }
    static func appendBool(_ b: Bool, to out: inout [UInt8]) { out.append(b ? 0xC3 : 0xC2) }

    static func appendInt(_ value: Int64, to out: inout [UInt8]) {
        if value >= 0 { return appendUInt(UInt64(value), to: &out) }
        if value >= -32 { out.append(UInt8(bitPattern: Int8(value))) }
        else if value >= -128 { out.append(0xD0); out.append(UInt8(bitPattern: Int8(value))) }
        else if value >= -32768 { out.append(0xD1); appendBigEndian(Int16(value), to: &out) }
        else if value >= -2_147_483_648 { out.append(0xD2); appendBigEndian(Int32(value), to: &out) }
        else { out.append(0xD3); appendBigEndian(value, to: &out) }
    }

    static func appendUInt(_ value: UInt64, to out: inout [UInt8]) {
        if value < 128 { out.append(UInt8(value)) }
        else if value <= 0xFF { out.append(0xCC); out.append(UInt8(value)) }
        else if value <= 0xFFFF { out.append(0xCD); appendBigEndian(UInt16(value), to: &out) }
        else if value <= 0xFFFF_FFFF { out.append(0xCE); appendBigEndian(UInt32(value), to: &out) }
        else { out.append(0xCF); appendBigEndian(value, to: &out) }
    }

    static func appendDouble(_ value: Double, to out: inout [UInt8]) {
        out.append(0xCB)
        appendBigEndian(value.bitPattern, to: &out)
    }

    static func appendStringHeader(_ count: Int, to out: inout [UInt8]) {
        if count < 32 { out.append(0xA0 | UInt8(count)) }
        else if count <= 0xFF { out.append(0xD9); out.append(UInt8(count)) }
        else if count <= 0xFFFF { out.append(0xDA); appendBigEndian(UInt16(count), to: &out) }
        else { out.append(0xDB); appendBigEndian(UInt32(count), to: &out) }
    }

    static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        appendStringHeader(bytes.count, to: &out)
        out.append(contentsOf: bytes)
    }

    static func appendArrayHeader(_ count: Int, to out: inout [UInt8]) {
        if count < 16 { out.append(0x90 | UInt8(count)) }
        else if count <= 0xFFFF { out.append(0xDC); appendBigEndian(UInt16(count), to: &out) }
        else { out.append(0xDD); appendBigEndian(UInt32(count), to: &out) }
    }

    static func appendMapHeader(_ count: Int, to out: inout [UInt8]) {
        if count < 16 { out.append(0x80 | UInt8(count)) }
        else if count <= 0xFFFF { out.append(0xDE); appendBigEndian(UInt16(count), to: &out) }
        else { out.append(0xDF); appendBigEndian(UInt32(count), to: &out) }
    }

    @inline(__always)
    static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
    }
}
