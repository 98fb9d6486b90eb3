/// JSON and MessagePack encoders for owned `Value`s, for frames the server
/// builds itself (READY, INVALID with extra_info, QUERY_NODES results).
/// Same output rules as the tape encoders (TapeEncoders.swift). Stdlib only.
extension Value {
    /// Appends this value as JSON. Non-finite doubles become `null`.
    func appendJSON(to out: inout [UInt8]) {
        switch self {
        case .null: JSONEmitter.appendNull(to: &out)
        case .bool(let b): JSONEmitter.appendBool(b, to: &out)
        case .int(let v): JSONEmitter.appendInt(v, to: &out)
        case .uint(let v): JSONEmitter.appendUInt(v, to: &out)
        case .double(let d): JSONEmitter.appendDouble(d, to: &out)
        case .string(var s): s.withUTF8 { JSONEmitter.appendString(UnsafeRawBufferPointer($0), to: &out) }
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (k, e) in elements.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                e.appendJSON(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (name, v) in object.members {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                var name = name
                name.withUTF8 { JSONEmitter.appendString(UnsafeRawBufferPointer($0), to: &out) }
                out.append(UInt8(ascii: ":"))
                v.appendJSON(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Appends this value as MessagePack (smallest encodings, `str` strings,
    /// float64 doubles).
    func appendMessagePack(to out: inout [UInt8]) {
        switch self {
        case .null: MessagePackEmitter.appendNil(to: &out)
        case .bool(let b): MessagePackEmitter.appendBool(b, to: &out)
        case .int(let v): MessagePackEmitter.appendInt(v, to: &out)
        case .uint(let v): MessagePackEmitter.appendUInt(v, to: &out)
        case .double(let d): MessagePackEmitter.appendDouble(d, to: &out)
        case .string(var s): s.withUTF8 { MessagePackEmitter.appendString(UnsafeRawBufferPointer($0), to: &out) }
        case .array(let elements):
            MessagePackEmitter.appendArrayHeader(elements.count, to: &out)
            for e in elements { e.appendMessagePack(to: &out) }
        case .object(let object):
            MessagePackEmitter.appendMapHeader(object.count, to: &out)
            for (name, v) in object.members {
                var name = name
                name.withUTF8 { MessagePackEmitter.appendString(UnsafeRawBufferPointer($0), to: &out) }
                v.appendMessagePack(to: &out)
            }
        }
    }
}
