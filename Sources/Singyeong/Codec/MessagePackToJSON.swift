/// Transcoding a payload between the encodings straight from its bytes,
/// without a `DocumentTape` (32 bytes per node: a 16 MiB payload of tiny
/// members would need ~120 MB of nodes and most of a second to build; these
/// walk it once). The output is byte for byte what decoding into a tape and
/// `appendJSON` / `appendMessagePack` produce; the fuzz targets and
/// CodecTests check that. Hand-written: the conversions follow this
/// product's own rules (protocol.md §2.3 as `MessagePackTapeDecoder` reads it).
/// Stdlib only here (the MessagePack fuzzer compiles it alone); the JSON →
/// MessagePack direction is in JSONToMessagePack.swift.
enum StreamingTranscoder {
    /// MessagePack → JSON by the decoder's rules (bin as a string, integer
    /// keys as their decimal text, float32 widened, ext refused, UTF-8
    /// checked, depth ≤ `MessagePackTapeDecoder.maxDepth`). False, with `out`
    /// restored, for input the decoder would refuse. `validated`: the input
    /// is a span the decoder already accepted (an `.unexpanded` node), so
    /// its strings' UTF-8 is not checked again.
    static func appendJSON(fromMessagePack input: UnsafeRawBufferPointer, validated: Bool = false,
                           to out: inout [UInt8]) -> Bool {
        guard let base = input.baseAddress, input.count > 0 else { return false }
        let mark = out.count
        // JSON is usually a little longer than the MessagePack it comes
        // from; reserving that avoids regrowing a large output.
        out.reserveCapacity(mark + input.count + input.count / 2)
        var reader = MessagePackTapeDecoder.Reader(base: base, count: input.count)
        do throws(DocumentDecodeError) {
            try ChunkedByteSink.appending(to: &out) { (sink) throws(DocumentDecodeError) in
                try jsonValue(&reader, depth: 0, checkUTF8: !validated, to: &sink)
            }
            guard reader.position == reader.count else { throw MessagePackTapeDecoder.truncated }
            return true
        } catch {
            out.removeSubrange(mark...)
            return false
        }
    }

    private static let invalid = DocumentDecodeError.invalidMessagePack(detail: "invalid MessagePack")

    private static func jsonValue(_ r: inout MessagePackTapeDecoder.Reader, depth: Int, checkUTF8: Bool,
                                  to out: inout some ByteSink) throws(DocumentDecodeError) {
        let b = try r.byte()
        switch b {
        case 0x00...0x7F: JSONEmitter.appendInt(Int64(b), to: &out)
        case 0xE0...0xFF: JSONEmitter.appendInt(Int64(Int8(bitPattern: b)), to: &out)
        case 0x80...0x8F: try jsonMap(&r, count: Int(b & 0x0F), depth: depth, checkUTF8: checkUTF8, to: &out)
        case 0x90...0x9F: try jsonArray(&r, count: Int(b & 0x0F), depth: depth, checkUTF8: checkUTF8, to: &out)
        case 0xA0...0xBF: try jsonString(&r, length: Int(b & 0x1F), checkUTF8: checkUTF8, to: &out)
        case 0xC0: JSONEmitter.appendNull(to: &out)
        case 0xC2, 0xC3: JSONEmitter.appendBool(b == 0xC3, to: &out)
        case 0xC4, 0xD9: try jsonString(&r, length: Int(try r.read(UInt8.self)), checkUTF8: checkUTF8, to: &out)
        case 0xC5, 0xDA: try jsonString(&r, length: Int(try r.read(UInt16.self)), checkUTF8: checkUTF8, to: &out)
        case 0xC6, 0xDB: try jsonString(&r, length: Int(try r.read(UInt32.self)), checkUTF8: checkUTF8, to: &out)
        case 0xCA: JSONEmitter.appendDouble(Double(Float(bitPattern: try r.read(UInt32.self))), to: &out)
        case 0xCB: JSONEmitter.appendDouble(Double(bitPattern: try r.read(UInt64.self)), to: &out)
        case 0xCC: JSONEmitter.appendInt(Int64(try r.read(UInt8.self)), to: &out)
        case 0xCD: JSONEmitter.appendInt(Int64(try r.read(UInt16.self)), to: &out)
        case 0xCE: JSONEmitter.appendInt(Int64(try r.read(UInt32.self)), to: &out)
        case 0xCF:
            let v = try r.read(UInt64.self)
            if v > UInt64(Int64.max) { JSONEmitter.appendUInt(v, to: &out) } else { JSONEmitter.appendInt(Int64(v), to: &out) }
        case 0xD0: JSONEmitter.appendInt(Int64(try r.read(Int8.self)), to: &out)
        case 0xD1: JSONEmitter.appendInt(Int64(try r.read(Int16.self)), to: &out)
        case 0xD2: JSONEmitter.appendInt(Int64(try r.read(Int32.self)), to: &out)
        case 0xD3: JSONEmitter.appendInt(try r.read(Int64.self), to: &out)
        case 0xDC: try jsonArray(&r, count: Int(try r.read(UInt16.self)), depth: depth, checkUTF8: checkUTF8, to: &out)
        case 0xDD: try jsonArray(&r, count: Int(try r.read(UInt32.self)), depth: depth, checkUTF8: checkUTF8, to: &out)
        case 0xDE: try jsonMap(&r, count: Int(try r.read(UInt16.self)), depth: depth, checkUTF8: checkUTF8, to: &out)
        case 0xDF: try jsonMap(&r, count: Int(try r.read(UInt32.self)), depth: depth, checkUTF8: checkUTF8, to: &out)
        default: throw invalid  // ext, 0xC1
        }
    }

    private static func jsonString(_ r: inout MessagePackTapeDecoder.Reader, length: Int, checkUTF8: Bool,
                                   to out: inout some ByteSink) throws(DocumentDecodeError) {
        let bytes = try r.bytes(length)
        guard !checkUTF8 || UTF8Validator.isValid(bytes) else { throw invalid }
        JSONEmitter.appendString(bytes, to: &out)
    }

    private static func jsonArray(_ r: inout MessagePackTapeDecoder.Reader, count: Int, depth: Int, checkUTF8: Bool,
                                  to out: inout some ByteSink) throws(DocumentDecodeError) {
        guard depth < MessagePackTapeDecoder.maxDepth, count <= r.remaining else { throw invalid }
        out.append(UInt8(ascii: "["))
        for k in 0..<count {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            try jsonValue(&r, depth: depth + 1, checkUTF8: checkUTF8, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    private static func jsonMap(_ r: inout MessagePackTapeDecoder.Reader, count: Int, depth: Int, checkUTF8: Bool,
                                to out: inout some ByteSink) throws(DocumentDecodeError) {
        guard depth < MessagePackTapeDecoder.maxDepth, count <= r.remaining / 2 else { throw invalid }
        out.append(UInt8(ascii: "{"))
        for k in 0..<count {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            try jsonKey(&r, checkUTF8: checkUTF8, to: &out)
            out.append(UInt8(ascii: ":"))
            try jsonValue(&r, depth: depth + 1, checkUTF8: checkUTF8, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// A key: a string, or an integer as its decimal text in quotes.
    private static func jsonKey(_ r: inout MessagePackTapeDecoder.Reader, checkUTF8: Bool, to out: inout some ByteSink) throws(DocumentDecodeError) {
        let b = try r.byte()
        switch b {
        case 0xA0...0xBF: return try jsonString(&r, length: Int(b & 0x1F), checkUTF8: checkUTF8, to: &out)
        case 0xC4, 0xD9: return try jsonString(&r, length: Int(try r.read(UInt8.self)), checkUTF8: checkUTF8, to: &out)
        case 0xC5, 0xDA: return try jsonString(&r, length: Int(try r.read(UInt16.self)), checkUTF8: checkUTF8, to: &out)
        case 0xC6, 0xDB: return try jsonString(&r, length: Int(try r.read(UInt32.self)), checkUTF8: checkUTF8, to: &out)
        case 0x00...0x7F, 0xE0...0xFF, 0xCC...0xD3:
            out.append(UInt8(ascii: "\""))
            r.position -= 1
            try jsonValue(&r, depth: 0, checkUTF8: checkUTF8, to: &out)  // an integer: its digits
            out.append(UInt8(ascii: "\""))
        default: throw invalid
        }
    }
}
