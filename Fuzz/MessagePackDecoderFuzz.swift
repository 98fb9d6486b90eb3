// libFuzzer target: MessagePack → tape; checks the tape's structure, then
// re-encodes it to MessagePack (from the tape and from the owned `Value`),
// decodes that again and compares the values. The JSON output is checked for
// valid UTF-8 only: decoding JSON needs simdjson, which this stdlib-only build
// leaves out (JSONDecoderFuzz.swift covers JSON ↔ MessagePack).
//
// Build (from /work/main):
//   swiftc -O -sanitize=fuzzer,address -parse-as-library \
//     Sources/Singyeong/Codec/DocumentTape.swift \
//     Sources/Singyeong/Codec/MessagePackTapeDecoder.swift \
//     Sources/Singyeong/Codec/TapeEncoders.swift \
//     Sources/Singyeong/Codec/ValueEncoders.swift \
//     Sources/Singyeong/Codec/Value.swift \
//     Fuzz/MessagePackDecoderFuzz.swift -o /tmp/mpfuzz
//   /tmp/mpfuzz -max_total_time=60 -max_len=4096
//
// NaN payloads compare unequal to themselves, so values are compared through
// a canonical form in which every double is represented by its bit pattern
// (float32 input is widened exactly, so bit patterns survive the round trip).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessagePack(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var lazy = DocumentTape()
    let lazyAccepted = (try? MessagePackTapeDecoder.decode(input, into: &lazy, lazyPayload: true)) != nil
    var tape = DocumentTape()
    do {
        try MessagePackTapeDecoder.decode(input, into: &tape)
    } catch {
        precondition(tape.nodeCount == 0, "tape not cleared after an error")
        precondition(!lazyAccepted, "lazy decode accepted what the full decode refuses: \(error)")
        var streamed: [UInt8] = [1]
        precondition(!StreamingTranscoder.appendJSON(fromMessagePack: input, to: &streamed) && streamed == [1],
                     "streaming transcoder accepted invalid MessagePack")
        return 0
    }
    precondition(lazyAccepted, "lazy decode refused a valid document")
    checkUnexpanded(lazy, full: tape)
    // An unexpanded span transcodes the same without the UTF-8 checks
    // (`validated`) as with them.
    for i in 0..<lazy.nodeCount where lazy.kind(i) == .unexpanded {
        let span = UnsafeRawBufferPointer(rebasing: input[lazy.span(i)])
        var checked: [UInt8] = [], trusted: [UInt8] = []
        precondition(StreamingTranscoder.appendJSON(fromMessagePack: span, to: &checked), "a validated span failed to transcode")
        precondition(StreamingTranscoder.appendJSON(fromMessagePack: span, validated: true, to: &trusted) && trusted == checked,
                     "validated: true changed the transcoding")
    }
    for lazyPayload in [false, true] {
        checkNodeLimit(lazyPayload ? lazy : tape) { limit throws(DocumentDecodeError) in
            var limited = DocumentTape()
            try MessagePackTapeDecoder.decode(input, into: &limited, lazyPayload: lazyPayload, maxNodes: limit)
            return limited
        }
    }

    // The tape-free transcoder gives exactly the tape encoder's bytes.
    var streamed: [UInt8] = []
    precondition(StreamingTranscoder.appendJSON(fromMessagePack: input, to: &streamed), "streaming transcoder refused valid MessagePack")
    var fromTape: [UInt8] = []
    tape.appendJSON(0, to: &fromTape)
    precondition(streamed == fromTape, "streamed JSON differs from the tape's")
    checkTapeShape(tape, inputCount: size)
    let value = tape.value(0)

    // MessagePack → tape → MessagePack → tape: identical values.
    var mp: [UInt8] = []
    tape.appendMessagePack(0, to: &mp)
    var again = DocumentTape()
    do {
        try mp.withUnsafeBytes { try MessagePackTapeDecoder.decode($0, into: &again) }
    } catch {
        fatalError("re-encoded MessagePack failed to decode: \(error)")
    }
    precondition(canonical(again.value(0)) == canonical(value), "MessagePack round trip changed the value")

    // Value encoder agrees with the tape encoder when no object has a repeated key.
    var fromValue: [UInt8] = []
    value.appendMessagePack(to: &fromValue)
    var third = DocumentTape()
    do {
        try fromValue.withUnsafeBytes { try MessagePackTapeDecoder.decode($0, into: &third) }
    } catch {
        fatalError("Value-encoded MessagePack failed to decode: \(error)")
    }
    precondition(canonical(third.value(0)) == canonical(value), "Value encoder changed the value")

    // JSON output must be valid UTF-8 and balanced (full JSON re-decode is in JSONDecoderFuzz).
    var json: [UInt8] = []
    tape.appendJSON(0, to: &json)
    precondition(json.withUnsafeBytes { UTF8Validator.isValid($0) }, "JSON output is not UTF-8")
    return 0
}

/// Structural invariants: next pointers, counts, spans inside the input.
private func checkTapeShape(_ tape: DocumentTape, inputCount: Int) {
    precondition(tape.next(0) == tape.nodeCount)
    for i in 0..<tape.nodeCount {
        let span = tape.span(i)
        precondition(span.lowerBound < span.upperBound && span.upperBound <= inputCount)
        precondition(tape.next(i) > i && tape.next(i) <= tape.nodeCount)
        if tape.kind(i) == .array { precondition(Array(tape.elements(of: i)).count == tape.count(i)) }
        if tape.kind(i) == .object {
            for (k, _) in tape.members(of: i) { precondition(tape.kind(k) == .string) }
        }
    }
}
