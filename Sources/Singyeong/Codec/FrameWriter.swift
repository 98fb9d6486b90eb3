/// Writes one gateway frame (a map) in either encoding through one API, so
/// each server frame is described once.
///
/// JSON needs separators; a bit per nesting level (64 levels, no allocation)
/// remembers whether a member was already written. `raw` copies bytes that
/// are already encoded in this writer's encoding (a client's own `d`, echoed
/// back); `tapeValue` copies a decoded node's source bytes when the encodings
/// match and transcodes otherwise.
///
/// A Codec type (it only emits JSON or MessagePack) so that the cluster and
/// the REST routes can write gateway-shaped frames without the gateway;
/// wrapping the result in a WebSocket message is Gateway's
/// (FrameWriter+WebSocket.swift).
struct FrameWriter {
    let encoding: PayloadEncoding
    private(set) var bytes: [UInt8] = []
    private var depth = 0
    private var hasMember: UInt64 = 0

    init(encoding: PayloadEncoding, capacity: Int = 128) {
        self.encoding = encoding
        bytes.reserveCapacity(capacity)
    }

    mutating func beginObject(count: Int) {
        switch encoding {
        case .json: bytes.append(UInt8(ascii: "{"))
        case .msgpack: MessagePackEmitter.appendMapHeader(count, to: &bytes)
        }
        depth += 1
        hasMember &= ~(1 << UInt64(depth))
    }

    mutating func endObject() {
        if encoding == .json { bytes.append(UInt8(ascii: "}")) }
        depth -= 1
    }

    mutating func beginArray(count: Int) {
        switch encoding {
        case .json: bytes.append(UInt8(ascii: "["))
        case .msgpack: MessagePackEmitter.appendArrayHeader(count, to: &bytes)
        }
        depth += 1
        hasMember &= ~(1 << UInt64(depth))
    }

    mutating func endArray() {
        if encoding == .json { bytes.append(UInt8(ascii: "]")) }
        depth -= 1
    }

    /// Separator before an array element (JSON only).
    mutating func element() {
        guard encoding == .json else { return }
        let bit: UInt64 = 1 << UInt64(depth)
        if hasMember & bit != 0 { bytes.append(UInt8(ascii: ",")) }
        hasMember |= bit
    }

    mutating func key(_ name: StaticString) {
        element()
        let raw = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        switch encoding {
        case .json:
            JSONEmitter.appendString(raw, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
        case .msgpack:
            MessagePackEmitter.appendString(raw, to: &bytes)
        }
    }

    mutating func null() {
        switch encoding {
        case .json: JSONEmitter.appendNull(to: &bytes)
        case .msgpack: MessagePackEmitter.appendNil(to: &bytes)
        }
    }

    mutating func bool(_ b: Bool) {
        switch encoding {
        case .json: JSONEmitter.appendBool(b, to: &bytes)
        case .msgpack: MessagePackEmitter.appendBool(b, to: &bytes)
        }
    }

    mutating func int(_ v: Int64) {
        switch encoding {
        case .json: JSONEmitter.appendInt(v, to: &bytes)
        case .msgpack: MessagePackEmitter.appendInt(v, to: &bytes)
        }
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            let raw = UnsafeRawBufferPointer(utf8)
            switch encoding {
            case .json: JSONEmitter.appendString(raw, to: &bytes)
            case .msgpack: MessagePackEmitter.appendString(raw, to: &bytes)
            }
        }
    }

    /// A string given as UTF-8 bytes (no `String` is built).
    mutating func string(utf8 raw: UnsafeRawBufferPointer) {
        switch encoding {
        case .json: JSONEmitter.appendString(raw, to: &bytes)
        case .msgpack: MessagePackEmitter.appendString(raw, to: &bytes)
        }
    }

    mutating func string(_ s: StaticString) {
        let raw = UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)
        switch encoding {
        case .json: JSONEmitter.appendString(raw, to: &bytes)
        case .msgpack: MessagePackEmitter.appendString(raw, to: &bytes)
        }
    }

    mutating func value(_ v: Value) {
        switch encoding {
        case .json: v.appendJSON(to: &bytes)
        case .msgpack: v.appendMessagePack(to: &bytes)
        }
    }

    /// Bytes already encoded in `encoding`.
    mutating func raw(_ encoded: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: encoded)
    }

    /// One MessagePack-encoded value (from a peer): copied, or transcoded to JSON.
    mutating func messagePackValue(_ encoded: UnsafeRawBufferPointer) {
        if encoding == .msgpack {
            raw(encoded)
            return
        }
        var tape = DocumentTape()
        if (try? MessagePackTapeDecoder.decode(encoded, into: &tape)) != nil, !tape.isEmpty {
            tape.appendJSON(tape.root, to: &bytes)
        } else {
            null()
        }
    }

    /// A decoded node: its source bytes when the encodings match, else transcoded.
    mutating func tapeValue(_ node: Int, in message: DecodedMessage) {
        if message.encoding == encoding {
            raw(UnsafeRawBufferPointer(rebasing: message.source[message.tape.span(node)]))
        } else {
            message.appendTranscoded(node, as: encoding, to: &bytes)
        }
    }

    /// The standard frame head: `op`, `t`, `ts`, then the caller writes `d`'s value.
    /// (`beginFrame` + the `d` value + `endObject`.)
    mutating func beginFrame(op: Int, t: StaticString?, ts: Int64) {
        beginObject(count: 4)
        key("op"); int(Int64(op))
        key("t")
        if let t { string(t) } else { null() }
        key("ts"); int(ts)
        key("d")
    }
}

/// A decoded client frame: the tape plus the bytes it points into. Valid only
/// while the frame is being handled.
struct DecodedMessage {
    let tape: DocumentTape
    let source: UnsafeRawBufferPointer
    let encoding: PayloadEncoding

    /// Appends node `i` in `target` encoding (the caller has checked that it
    /// differs from this message's). An `.unexpanded` node (a lazily decoded
    /// payload) is transcoded straight from its bytes, which the lazy decode
    /// validated by the same rules (its span lies inside `source`, whose
    /// padding follows it, as the JSON side needs).
    func appendTranscoded(_ i: Int, as target: PayloadEncoding, to out: inout [UInt8]) {
        guard tape.kind(i) == .unexpanded else {
            switch target {
            case .json: tape.appendJSON(i, to: &out)
            case .msgpack: tape.appendMessagePack(i, to: &out)
            }
            return
        }
        let piece = UnsafeRawBufferPointer(rebasing: source[tape.span(i)])
        let transcoded: Bool
        switch (encoding, target) {
        case (.json, .msgpack): transcoded = StreamingTranscoder.appendMessagePack(fromJSON: piece, validatedSpan: true, to: &out)
        case (.msgpack, .json): transcoded = StreamingTranscoder.appendJSON(fromMessagePack: piece, validated: true, to: &out)
        default: out.append(contentsOf: piece); transcoded = true
        }
        precondition(transcoded, "a validated payload failed to transcode")
    }
}
