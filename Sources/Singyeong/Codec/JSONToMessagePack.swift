import CSimdjson

/// JSON → MessagePack without a tape: simdjson's walk emits MessagePack
/// directly (csimdjson.cpp, `sy_json_to_msgpack`). See MessagePackToJSON.swift.
extension StreamingTranscoder {
    /// JSON → MessagePack through `sy_json_to_msgpack` (simdjson, the same
    /// walk and checks as `JSONTapeDecoder`). `input` needs the decoder's
    /// padding after it. False (nothing appended) if it is not valid JSON.
    /// `validatedSpan`: `input` is an `.unexpanded` node's span, which the
    /// decoder already walked (SY_JSON_VALIDATED_SPAN skips a scan).
    static func appendMessagePack(fromJSON input: UnsafeRawBufferPointer, validatedSpan: Bool = false,
                                  to out: inout [UInt8]) -> Bool {
        var result = sy_json_result()
        var bytes: UnsafePointer<UInt8>?
        var count = 0
        let base = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        guard let base, sy_json_to_msgpack(base, input.count, validatedSpan ? UInt32(SY_JSON_VALIDATED_SPAN) : 0,
                                                 &bytes, &count, &result) == Int32(SY_JSON_OK),
              let bytes else { return false }
        out.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
        return true
    }
}
