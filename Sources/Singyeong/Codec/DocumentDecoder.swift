/// Decodes one document in a negotiated `PayloadEncoding`.
///
/// The choice between the two tape decoders used to be a `switch encoding`
/// repeated wherever a gateway frame or a copied frame is decoded; this is
/// its one place, next to the decoders it chooses between.
enum DocumentDecoder {
    /// Decodes `input` into `tape` with the decoder for `encoding` (the tape
    /// is cleared first and left empty on error). JSON input needs
    /// `JSONTapeDecoder.padding` readable bytes after `input.count`, as
    /// `JSONTapeDecoder.decode` documents; MessagePack needs none. Without
    /// `maxNodes` there is no limit beyond each decoder's own. `knownTargets`:
    /// see `JSONTapeDecoder.decode` (MessagePack ignores it).
    @inline(__always)
    static func decode(_ input: UnsafeRawBufferPointer, encoding: PayloadEncoding, into tape: inout DocumentTape,
                       lazyPayload: Bool = false, maxNodes: Int? = nil,
                       knownTargets: KnownSpans? = nil) throws(DocumentDecodeError) {
        switch (encoding, maxNodes) {
        case (.json, let maxNodes?):
            try JSONTapeDecoder.decode(input, into: &tape, lazyPayload: lazyPayload, maxNodes: maxNodes,
                                       knownTargets: knownTargets)
        case (.json, nil):
            try JSONTapeDecoder.decode(input, into: &tape, lazyPayload: lazyPayload)
        case (.msgpack, let maxNodes?):
            try MessagePackTapeDecoder.decode(input, into: &tape, lazyPayload: lazyPayload, maxNodes: maxNodes)
        case (.msgpack, nil):
            try MessagePackTapeDecoder.decode(input, into: &tape, lazyPayload: lazyPayload)
        }
    }
}
