import Glibc

/// The envelope of a session's last routed JSON frame: its bytes before and
/// after the payload, and its tape.
///
/// Clients send SEND after SEND with the same target and nonce; only the
/// payload changes. Such a frame is recognised by comparing two byte ranges,
/// and only its payload is validated, not the whole frame walked again:
/// JSON's grammar is context-free, so the same text around any valid array
/// or object is a valid document with the same tape, up to the payload's
/// span and the spans after it (`DocumentTape.resizeSpan`). Measured in
/// BENCHMARKS.md ("Repeated envelopes"). Hand-written because it is specific
/// to this protocol's frames; the validation itself is simdjson's.
///
/// Bounded: an envelope of more than `maxBytes` bytes, `maxNodes` nodes or
/// `maxBytes` bytes of strings is not kept, and storage is reused from frame
/// to frame, so a session holds at most a few KiB here.
struct EnvelopeTemplate {
    static let maxBytes = 1024
    static let maxNodes = 64

    private var prefix: [UInt8] = []
    private var suffix: [UInt8] = []
    private var tape = DocumentTape()
    /// The payload's node, or -1 when nothing is remembered.
    private var payload = -1
    /// The payload's depth in the document (the nesting limit counts from the root).
    private var payloadDepth = 0

    var isEmpty: Bool { payload < 0 }

    /// Remembers the frame `source`, decoded (JSON) into `tape`, around its
    /// `.unexpanded` node `payload` at `depth`; forgets instead when the
    /// envelope is over the bounds.
    mutating func remember(_ tape: DocumentTape, source: UnsafeRawBufferPointer, payload: Int, depth: Int) {
        let span = tape.span(payload)
        guard tape.kind(payload) == .unexpanded, span.lowerBound + (source.count - span.upperBound) <= Self.maxBytes,
              tape.nodeCount <= Self.maxNodes, tape.stringCount <= Self.maxBytes
        else {
            forget()
            return
        }
        prefix.removeAll(keepingCapacity: true)
        prefix.append(contentsOf: source[..<span.lowerBound])
        suffix.removeAll(keepingCapacity: true)
        suffix.append(contentsOf: source[span.upperBound...])
        self.tape.copyContents(of: tape)
        self.payload = payload
        payloadDepth = depth
    }

    mutating func forget() { payload = -1 }

    /// When `source` is the remembered envelope around exactly one valid
    /// array or object, writes the frame's tape into `tape` and returns
    /// true. Otherwise returns false with `tape` untouched (decode it in
    /// full: that also gives a bad frame its error). `source` needs
    /// `JSONTapeDecoder.padding` readable bytes after it.
    /// `maxNodes`: MAX_FRAME_VALUES, as the full decode has it.
    ///
    /// `mutating` only so that a caller holding the template in a class
    /// property uses it in place instead of copying it per call.
    mutating func decode(_ source: UnsafeRawBufferPointer, into tape: inout DocumentTape, maxNodes: Int = .max) -> Bool {
        guard payload >= 0, self.tape.nodeCount <= maxNodes, let base = source.baseAddress, source.count >= prefix.count + suffix.count + 2 else { return false }
        let end = source.count - suffix.count
        let same = prefix.withUnsafeBytes { $0.isEmpty || memcmp($0.baseAddress!, base, prefix.count) == 0 }
            && suffix.withUnsafeBytes { $0.isEmpty || memcmp($0.baseAddress!, base + end, suffix.count) == 0 }
        guard same, JSONTapeDecoder.validateContainer(UnsafeRawBufferPointer(rebasing: source[prefix.count..<end]),
                                                      depth: payloadDepth)
        else { return false }
        tape.copyContents(of: self.tape)
        tape.resizeSpan(of: payload, to: end)
        return true
    }
}
