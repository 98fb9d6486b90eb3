/// Decodes one MessagePack value into a `DocumentTape` (protocol.md §2.3,
/// Recommended rules):
///
/// * `str` → string; `bin` → string. Both must be valid UTF-8, otherwise the
///   frame is undecodable (the spec demands it for `bin`; for `str` we demand
///   it too, because the string may be transcoded into a JSON text frame,
///   which must be valid UTF-8).
/// * Map keys: strings as-is; integer keys become their decimal string (the
///   key node's span is still the encoded integer); any other key type is an
///   error.
/// * `ext` / `fixext` (timestamps included) and the unused byte 0xC1 are errors.
/// * `nil` → null; float32 is widened to float64; integers that fit Int64 are
///   `.int` whatever their encoding, uint64 above Int64.max is `.uint`.
/// * Exactly one top-level value, no trailing bytes; containers nested more
///   than `maxDepth` deep are errors.
/// * Every length is checked against the remaining input before use (a
///   container's declared count against the bytes left too), so forged
///   lengths fail fast and never cause a large allocation or an over-read.
///
/// Spans are the encoded bytes of each value (header included). Stdlib only.
///
/// With `lazyPayload`, a container under the root map's "d" → "payload" is
/// validated by the same rules but not decoded (one `.unexpanded` node), as
/// the JSON decoder does (SY_JSON_LAZY_PAYLOAD): a SEND's payload is
/// forwarded as bytes, so its size, not its member count, sets the cost.
enum MessagePackTapeDecoder {
    static let maxDepth = 64

    /// Decodes `input` into `tape` (which is cleared first; left empty on
    /// error). More than `maxNodes` nodes is `.tooManyValues`, found as they
    /// are appended (an unexpanded payload is one node).
    static func decode(_ input: UnsafeRawBufferPointer, into tape: inout DocumentTape,
                       lazyPayload: Bool = false, maxNodes: Int = .max) throws(DocumentDecodeError) {
        tape.removeAll()
        guard input.count < Int(UInt32.max) else { throw .invalidMessagePack(detail: "frame too large") }
        guard let base = input.baseAddress, input.count > 0 else { throw .invalidMessagePack(detail: "empty input") }
        var reader = Reader(base: base, count: input.count)
        reader.maxNodes = maxNodes
        do throws(DocumentDecodeError) {
            try decodeValue(&reader, into: &tape, depth: 0, role: lazyPayload ? .root : .other)
            if reader.position != reader.count { throw DocumentDecodeError.invalidMessagePack(detail: "trailing bytes after the value") }
        } catch {
            tape.removeAll()
            throw error
        }
    }

    /// Convenience for tests and cold paths.
    static func decode(copying bytes: some Collection<UInt8>, into tape: inout DocumentTape) throws(DocumentDecodeError) {
        let array = Array(bytes)
        let result: DocumentDecodeError? = array.withUnsafeBytes { raw in
            do throws(DocumentDecodeError) {
                try decode(raw, into: &tape)
                return nil
            } catch { return error }
        }
        if let result { throw result }
    }

    struct Reader {
        let base: UnsafeRawPointer
        let count: Int
        var position = 0
        /// The decoder's node bound (`decode`'s `maxNodes`).
        var maxNodes = Int.max

        init(base: UnsafeRawPointer, count: Int) { self.base = base; self.count = count }

        var remaining: Int { count - position }

        @inline(__always) mutating func byte() throws(DocumentDecodeError) -> UInt8 {
            guard position < count else { throw truncated }
            let b = base.load(fromByteOffset: position, as: UInt8.self)
            position += 1
            return b
        }

        @inline(__always) mutating func read<T: FixedWidthInteger>(_: T.Type) throws(DocumentDecodeError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw truncated }
            let v = T(bigEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
            position += size
            return v
        }

        /// Consumes `length` bytes, returning them (checked against the input).
        @inline(__always) mutating func bytes(_ length: Int) throws(DocumentDecodeError) -> UnsafeRawBufferPointer {
            guard length >= 0, length <= remaining else { throw truncated }
            let b = UnsafeRawBufferPointer(start: base + position, count: length)
            position += length
            return b
        }
    }

    static let truncated = DocumentDecodeError.invalidMessagePack(detail: "truncated input")

    /// Where a value sits, for `lazyPayload`.
    private enum Role { case root, d, other }

    private static func decodeValue(_ r: inout Reader, into tape: inout DocumentTape, depth: Int,
                                    role: Role = .other) throws(DocumentDecodeError) {
        let start = r.position
        let b = try r.byte()
        switch b {
        case 0x00...0x7F:
            _ = tape.appendNode(.int, spanStart: start, spanEnd: r.position, bits: UInt64(b))
        case 0xE0...0xFF:
            _ = tape.appendNode(.int, spanStart: start, spanEnd: r.position, bits: UInt64(bitPattern: Int64(Int8(bitPattern: b))))
        case 0x80...0x8F:
            try decodeMap(&r, count: Int(b & 0x0F), start: start, into: &tape, depth: depth, role: role)
        case 0x90...0x9F:
            try decodeArray(&r, count: Int(b & 0x0F), start: start, into: &tape, depth: depth)
        case 0xA0...0xBF:
            try decodeString(&r, length: Int(b & 0x1F), start: start, into: &tape)
        case 0xC0:
            _ = tape.appendNode(.null, spanStart: start, spanEnd: r.position)
        case 0xC2, 0xC3:
            _ = tape.appendNode(.bool, spanStart: start, spanEnd: r.position, bits: b == 0xC3 ? 1 : 0)
        case 0xC4: try decodeString(&r, length: Int(try r.read(UInt8.self)), start: start, into: &tape)
        case 0xC5: try decodeString(&r, length: Int(try r.read(UInt16.self)), start: start, into: &tape)
        case 0xC6: try decodeString(&r, length: Int(try r.read(UInt32.self)), start: start, into: &tape)
        case 0xD9: try decodeString(&r, length: Int(try r.read(UInt8.self)), start: start, into: &tape)
        case 0xDA: try decodeString(&r, length: Int(try r.read(UInt16.self)), start: start, into: &tape)
        case 0xDB: try decodeString(&r, length: Int(try r.read(UInt32.self)), start: start, into: &tape)
        case 0xCA:
            let f = Float(bitPattern: try r.read(UInt32.self))
            _ = tape.appendNode(.double, spanStart: start, spanEnd: r.position, bits: Double(f).bitPattern)
        case 0xCB:
            let bits = try r.read(UInt64.self)
            _ = tape.appendNode(.double, spanStart: start, spanEnd: r.position, bits: bits)
        case 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3:
            let (isUnsigned, bits) = try readInteger(&r, head: b)
            _ = tape.appendNode(isUnsigned ? .uint : .int, spanStart: start, spanEnd: r.position, bits: bits)
        case 0xDC: try decodeArray(&r, count: Int(try r.read(UInt16.self)), start: start, into: &tape, depth: depth)
        case 0xDD: try decodeArray(&r, count: Int(try r.read(UInt32.self)), start: start, into: &tape, depth: depth)
        case 0xDE: try decodeMap(&r, count: Int(try r.read(UInt16.self)), start: start, into: &tape, depth: depth, role: role)
        case 0xDF: try decodeMap(&r, count: Int(try r.read(UInt32.self)), start: start, into: &tape, depth: depth, role: role)
        case 0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8:
            throw .invalidMessagePack(detail: "ext types are not supported")
        default:  // 0xC1
            throw .invalidMessagePack(detail: "invalid MessagePack byte 0xc1")
        }
    }

    /// Reads the body of uint8–64 / int8–64 (`head` already consumed).
    /// Returns (isUnsigned: value > Int64.max, bit pattern).
    @inline(__always)
    private static func readInteger(_ r: inout Reader, head: UInt8) throws(DocumentDecodeError) -> (Bool, UInt64) {
        switch head {
        case 0xCC: return (false, UInt64(try r.read(UInt8.self)))
        case 0xCD: return (false, UInt64(try r.read(UInt16.self)))
        case 0xCE: return (false, UInt64(try r.read(UInt32.self)))
        case 0xCF: let v = try r.read(UInt64.self); return (v > UInt64(Int64.max), v)
        case 0xD0: return (false, UInt64(bitPattern: Int64(try r.read(Int8.self))))
        case 0xD1: return (false, UInt64(bitPattern: Int64(try r.read(Int16.self))))
        case 0xD2: return (false, UInt64(bitPattern: Int64(try r.read(Int32.self))))
        default: return (false, UInt64(bitPattern: try r.read(Int64.self)))
        }
    }

    private static func decodeString(_ r: inout Reader, length: Int, start: Int, into tape: inout DocumentTape) throws(DocumentDecodeError) {
        let bytes = try r.bytes(length)
        guard UTF8Validator.isValid(bytes) else { throw .invalidMessagePack(detail: "string is not valid UTF-8") }
        let offset = tape.appendStringBytes(bytes)
        _ = tape.appendNode(.string, spanStart: start, spanEnd: r.position, bits: UInt64(offset), stringLength: length)
    }

    private static func decodeArray(_ r: inout Reader, count: Int, start: Int, into tape: inout DocumentTape, depth: Int) throws(DocumentDecodeError) {
        guard depth < maxDepth else { throw .invalidMessagePack(detail: "nesting too deep") }
        // Every element takes at least one byte.
        guard count <= r.remaining else { throw truncated }
        let index = tape.appendNode(.array, spanStart: start)
        for _ in 0..<count {
            try decodeValue(&r, into: &tape, depth: depth + 1)
            guard tape.nodeCount <= r.maxNodes else { throw .tooManyValues(limit: r.maxNodes) }
        }
        tape.finishContainer(index, count: count, spanEnd: r.position)
    }

    private static func decodeMap(_ r: inout Reader, count: Int, start: Int, into tape: inout DocumentTape, depth: Int,
                                  role: Role = .other) throws(DocumentDecodeError) {
        guard depth < maxDepth else { throw .invalidMessagePack(detail: "nesting too deep") }
        // Every member takes at least two bytes.
        guard count <= r.remaining / 2 else { throw truncated }
        let index = tape.appendNode(.object, spanStart: start)
        for _ in 0..<count {
            try decodeKey(&r, into: &tape)
            var child = Role.other
            if role == .root && tape.isString(tape.nodeCount - 1, equalTo: "d") {
                child = .d
            } else if role == .d && tape.isString(tape.nodeCount - 1, equalTo: "payload") && r.remaining > 0 {
                let head = r.base.load(fromByteOffset: r.position, as: UInt8.self)
                if (0x80...0x9F).contains(head) || (0xDC...0xDF).contains(head) {
                    let valueStart = r.position
                    tape.dropsAppends = true
                    try decodeValue(&r, into: &tape, depth: depth + 1)
                    tape.dropsAppends = false
                    tape.appendUnexpanded(spanStart: valueStart, spanEnd: r.position)
                    continue
                }
            }
            try decodeValue(&r, into: &tape, depth: depth + 1, role: child)
            guard tape.nodeCount <= r.maxNodes else { throw .tooManyValues(limit: r.maxNodes) }
        }
        tape.finishContainer(index, count: count, spanEnd: r.position)
    }

    private static func decodeKey(_ r: inout Reader, into tape: inout DocumentTape) throws(DocumentDecodeError) {
        let start = r.position
        let b = try r.byte()
        let isUnsigned: Bool
        let bits: UInt64
        switch b {
        case 0xA0...0xBF: return try decodeString(&r, length: Int(b & 0x1F), start: start, into: &tape)
        case 0xD9: return try decodeString(&r, length: Int(try r.read(UInt8.self)), start: start, into: &tape)
        case 0xDA: return try decodeString(&r, length: Int(try r.read(UInt16.self)), start: start, into: &tape)
        case 0xDB: return try decodeString(&r, length: Int(try r.read(UInt32.self)), start: start, into: &tape)
        case 0xC4: return try decodeString(&r, length: Int(try r.read(UInt8.self)), start: start, into: &tape)
        case 0xC5: return try decodeString(&r, length: Int(try r.read(UInt16.self)), start: start, into: &tape)
        case 0xC6: return try decodeString(&r, length: Int(try r.read(UInt32.self)), start: start, into: &tape)
        case 0x00...0x7F: (isUnsigned, bits) = (false, UInt64(b))
        case 0xE0...0xFF: (isUnsigned, bits) = (false, UInt64(bitPattern: Int64(Int8(bitPattern: b))))
        case 0xCC...0xD3: (isUnsigned, bits) = try readInteger(&r, head: b)
        default: throw .invalidMessagePack(detail: "map key must be a string or an integer")
        }
        // Integer key → its decimal text.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes ≥ "-9223372036854775808"
        let (offset, length) = withUnsafeMutableBytes(of: &digits) { buffer -> (Int, Int) in
            let negative = !isUnsigned && Int64(bitPattern: bits) < 0
            var v = negative ? Int64(bitPattern: bits).magnitude : bits
            var n = 0
            repeat {
                buffer[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            } while v > 0
            if negative { buffer[23 - n] = UInt8(ascii: "-"); n += 1 }
            return (tape.appendStringBytes(UnsafeRawBufferPointer(rebasing: buffer[(24 - n)...])), n)
        }
        _ = tape.appendNode(.string, spanStart: start, spanEnd: r.position, bits: UInt64(offset), stringLength: length)
    }
}
