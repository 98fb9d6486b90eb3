/// A piece of a client's message inside a peer body — a query, a payload
/// or a nonce — in the client's encoding: a JSON piece travels as a
/// MessagePack string holding its text, a MessagePack piece is embedded as
/// the value it is. Either way the receiver gets the piece's bytes without
/// copying them: they are a slice of the frame body, valid only while the
/// frame is handled (the link's input buffer moves on afterwards).
enum PeerPiece {
    /// `enc` in peer bodies: 0 for JSON, 1 for MessagePack.
    static func encodingCode(_ encoding: PayloadEncoding) -> Int64 { encoding == .json ? 0 : 1 }

    /// Reads `enc` of `object`: JSON only when it is the integer 0 (what
    /// every receiver did); anything else, missing included, is MessagePack.
    static func encoding(of object: Int, tape: DocumentTape) -> PayloadEncoding {
        tape.member(of: object, named: "enc").flatMap { tape.int64($0) } == 0 ? .json : .msgpack
    }

    static func write(_ bytes: UnsafeRawBufferPointer, _ encoding: PayloadEncoding, into w: inout FrameWriter) {
        if encoding == .json { w.string(utf8: bytes) } else { w.raw(bytes) }
    }

    /// The bytes of piece `node` in `body`: a MessagePack piece is the
    /// value's encoding; a JSON piece is the string's text (nil when it is
    /// not a string). A MessagePack string's text is the last bytes of its
    /// span, verbatim (the decoder only validated it), so no copy is needed.
    static func read(_ node: Int, _ encoding: PayloadEncoding, tape: DocumentTape,
                     body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let span = tape.span(node)
        guard encoding == .json else { return UnsafeRawBufferPointer(rebasing: body[span]) }
        guard tape.kind(node) == .string else { return nil }
        let length = Int(tape.node(node).stringLength)
        return UnsafeRawBufferPointer(rebasing: body[(span.upperBound - length)..<span.upperBound])
    }

    /// Whether two pieces hold the same bytes (for the messages' `==`).
    static func same(_ a: UnsafeRawBufferPointer?, _ b: UnsafeRawBufferPointer?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (a?, b?): return a.elementsEqual(b)
        default: return false
        }
    }
}
