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
    ///
    /// `knownTargets` (with `lazyPayload`): the first container `target` in
    /// the root's `d` whose bytes it vouches for becomes one `.unexpanded`
    /// node instead of being walked (`SY_JSON_SKIP_KNOWN_TARGET`).
    static func decode(_ input: UnsafeRawBufferPointer, into tape: inout DocumentTape,
                       lazyPayload: Bool = false, maxNodes: Int = Int(UInt32.max),
                       knownTargets: KnownSpans? = nil) throws(DocumentDecodeError) {
        tape.removeAll()
        // Unescaped strings never exceed the input length; nodes start modest.
        tape.reserveStorage(nodes: 16, stringBytes: input.count)
        var result = sy_json_result()
        var flags = lazyPayload ? UInt32(SY_JSON_LAZY_PAYLOAD) : 0
        if knownTargets != nil { flags |= UInt32(SY_JSON_SKIP_KNOWN_TARGET) }
        while true {
            let base = input.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? emptyInput
            // The oracle travels as a pointer to this existential, valid
            // while the C side runs (it calls back only then).
            let status = withUnsafePointer(to: knownTargets) { oracle in
                tape.withStorage { nodes, strings -> Int32 in
                    nodes.withMemoryRebound(to: sy_tape_node.self) { cNodes in
                        sy_json_build_tape_known(nil, base, input.count, flags,
                                                 UInt32(clamping: maxNodes), cNodes.baseAddress, cNodes.count,
                                                 strings.baseAddress, strings.count,
                                                 knownTargets == nil ? nil : askOracle,
                                                 UnsafeMutableRawPointer(mutating: oracle), &result)
                    }
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

    /// Whether `input` (with `padding` readable bytes after it) is exactly one
    /// JSON array or object, its first and last bytes the brackets, valid by
    /// the same rules as `decode` when it sits at `depth` in a document.
    /// Writes nothing (`sy_json_validate_container`).
    static func validateContainer(_ input: UnsafeRawBufferPointer, depth: Int) -> Bool {
        guard let base = input.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        var result = sy_json_result()
        return sy_json_validate_container(base, input.count, UInt32(clamping: depth), &result) == Int32(SY_JSON_OK)
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

    /// `sy_json_known_fn`: `context` points at the `KnownSpans?` passed to `decode`.
    private static let askOracle: sy_json_known_fn = { context, bytes, length in
        guard let oracle = context?.assumingMemoryBound(to: KnownSpans?.self).pointee else { return 0 }
        return oracle.isKnownJSON(UnsafeRawBufferPointer(start: bytes, count: length)) ? 1 : 0
    }

    private static let emptyInput: UnsafePointer<UInt8> = {
        let n = max(InputBuffer.padding, padding)
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        p.initialize(repeating: 0x20, count: n)
        return UnsafePointer(p)
    }()
}
