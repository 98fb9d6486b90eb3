import CSimdjson

/// Decodes a JSON document into a `DocumentTape` with simdjson (On-Demand),
/// through csimdjson's C API. The C side writes nodes straight into the
/// tape's storage (`DocumentTape.Node` has `sy_tape_node`'s layout) and the
/// unescaped strings into its arena; when either is too small it reports the
/// exact sizes and we grow once and decode again. After warm-up a decode
/// performs no allocation.
///
/// Accepts exactly one JSON value surrounded by optional whitespace; invalid
/// UTF-8, trailing content and nesting deeper than `maxDepth` are errors.
/// Numbers: see `sy_json_build_tape` (no '.'/'e'/'E' → Int64, else UInt64,
/// else Double; with '.'/'e'/'E' → Double; `-0` is the integer 0).
enum JSONTapeDecoder {
    /// Bytes that must be readable after the input (simdjson reads ahead):
    /// SIMDJSON_PADDING. Buffers are padded with `InputBuffer.padding`, which
    /// is at least this (checked by csimdjson.cpp and a unit test).
    static let padding: Int = sy_json_padding()
    static let maxDepth = Int(SY_JSON_MAX_DEPTH)

    /// Decodes `input`. The caller guarantees `padding` readable bytes after
    /// `input.count` (their content is irrelevant). Uses a parser owned by
    /// the calling thread. On error the tape is left empty. More than
    /// `maxNodes` nodes is `.tooManyValues` (an unexpanded payload is one
    /// node), found while counting, so it costs about `maxNodes` nodes.
    static func decode(_ input: UnsafeRawBufferPointer, into tape: inout DocumentTape,
                       lazyPayload: Bool = false, maxNodes: Int = Int(UInt32.max)) throws(DocumentDecodeError) {
        tape.removeAll()
        // Unescaped strings never exceed the input length; nodes start modest.
        tape.reserveStorage(nodes: 16, stringBytes: input.count)
        var result = sy_json_result()
        while true {
            let base = input.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyInput
            let status = tape.withStorage { nodes, strings -> Int32 in
                nodes.withMemoryRebound(to: sy_tape_node.self) { cNodes in
                    sy_json_build_tape(nil, base, input.count, lazyPayload ? UInt32(SY_JSON_LAZY_PAYLOAD) : 0,
                                       UInt32(clamping: maxNodes), cNodes.baseAddress, cNodes.count,
                                       strings.baseAddress, strings.count, &result)
                }
            }
            switch status {
            case Int32(SY_JSON_OK):
                tape.setCounts(nodes: Int(result.node_count), stringBytes: Int(result.string_bytes),
                               hasUnexpanded: result.unexpanded_count > 0)
                return
            case Int32(SY_JSON_NEED_CAPACITY):
                tape.reserveStorage(nodes: Int(result.node_count), stringBytes: Int(result.string_bytes))
            case Int32(SY_JSON_TOO_MANY_VALUES):
                tape.removeAll()
                throw .tooManyValues(limit: maxNodes)
            default:
                let detail = result.message.map { String(cString: $0) } ?? "invalid JSON"
                throw .invalidJSON(code: result.simdjson_error, detail: detail)
            }
        }
    }

    /// Convenience for tests and cold paths: copies `bytes` into a padded
    /// buffer, then decodes.
    static func decode(copying bytes: some Collection<UInt8>, into tape: inout DocumentTape) throws(DocumentDecodeError) {
        var padded = Array(bytes)
        let count = padded.count
        padded.append(contentsOf: repeatElement(0, count: padding))
        let result: DocumentDecodeError? = padded.withUnsafeBytes { raw in
            do throws(DocumentDecodeError) {
                try decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), into: &tape)
                return nil
            } catch { return error }
        }
        if let result { throw result }
    }

    private static let emptyInput: UnsafePointer<UInt8> = {
        let n = max(InputBuffer.padding, padding)
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        p.initialize(repeating: 0x20, count: n)
        return UnsafePointer(p)
    }()
}
