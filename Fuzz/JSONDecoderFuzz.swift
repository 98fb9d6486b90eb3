// libFuzzer target: JSON (simdjson via csimdjson) → tape; checks the tape's
// structure, that every value node's source span decodes on its own to the
// same value, and that JSON → MessagePack → tape and JSON → JSON → tape
// (both transcoded from the tape) give the same values.
//
// Build (from /work/main; the module map only makes the C header importable):
//   mkdir -p /tmp/csimdjson-module && printf 'module CSimdjson {\n  header "%s/Sources/CSimdjson/include/csimdjson.h"\n  export *\n}\n' "$PWD" > /tmp/csimdjson-module/module.modulemap
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CSimdjson/include \
//     -c Sources/CSimdjson/csimdjson.cpp -o /tmp/csimdjson-fuzz.o
//   swiftc -O -sanitize=fuzzer,address -parse-as-library -I /tmp/csimdjson-module \
//     Sources/Singyeong/Codec/DocumentTape.swift Sources/Singyeong/Codec/JSONTapeDecoder.swift \
//     Sources/Singyeong/Codec/MessagePackTapeDecoder.swift Sources/Singyeong/Codec/TapeEncoders.swift \
//     Sources/Singyeong/Codec/ValueEncoders.swift Sources/Singyeong/Codec/Value.swift \
//     Fuzz/JSONDecoderFuzz.swift /tmp/csimdjson-fuzz.o -lsimdjson -lstdc++ -o /tmp/jsonfuzz
//   /tmp/jsonfuzz -max_total_time=60 -max_len=4096
//
// (libsimdjson itself is not instrumented; the fuzzer still covers our C++
// walker and the Swift side, and ASan catches reads past the padded input.)

import CSimdjson

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The decoder needs padding after the input: copy into an exact-size
    // allocation + padding so ASan sees any read beyond it.
    let padding = Int(sy_json_padding())
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size + padding, alignment: 1)
    defer { buffer.deallocate() }
    buffer.copyMemory(from: UnsafeRawBufferPointer(start: data, count: size))
    for k in size..<(size + padding) { buffer[k] = 0 }
    let input = UnsafeRawBufferPointer(rebasing: buffer[0..<size])
    fuzzEnvelope.check(payload: input)

    // The lazy decode (SEND payloads validated, not decoded) must accept
    // exactly what the full decode accepts.
    var lazy = DocumentTape()
    let lazyAccepted = (try? JSONTapeDecoder.decode(input, into: &lazy, lazyPayload: true)) != nil
    // So must the decode that skips a target whose bytes an earlier input
    // had validated (the gateway's query cache as the oracle).
    var known = DocumentTape()
    let knownAccepted = (try? JSONTapeDecoder.decode(input, into: &known, lazyPayload: true,
                                                     knownTargets: fuzzKnownTargets)) != nil
    var tape = DocumentTape()
    do {
        try JSONTapeDecoder.decode(input, into: &tape)
    } catch {
        precondition(!lazyAccepted, "lazy decode accepted what the full decode refuses: \(error)")
        precondition(!knownAccepted, "known-target decode accepted what the full decode refuses: \(error)")
        var streamed: [UInt8] = []
        precondition(!StreamingTranscoder.appendMessagePack(fromJSON: input, to: &streamed) && streamed.isEmpty,
                     "streaming transcoder accepted invalid JSON")
        return 0
    }
    precondition(lazyAccepted, "lazy decode refused a valid document")
    checkUnexpanded(lazy, full: tape)
    precondition(knownAccepted, "known-target decode refused a valid document")
    checkUnexpanded(known, full: tape)
    fuzzKnownTargets.remember(firstTargetIn: tape, source: input)
    for lazyPayload in [false, true] {
        checkNodeLimit(lazyPayload ? lazy : tape) { limit throws(DocumentDecodeError) in
            var limited = DocumentTape()
            try JSONTapeDecoder.decode(input, into: &limited, lazyPayload: lazyPayload, maxNodes: limit)
            return limited
        }
    }
    // An unexpanded span transcodes the same with the bracket scan skipped
    // (SY_JSON_VALIDATED_SPAN) as without.
    for i in 0..<lazy.nodeCount where lazy.kind(i) == .unexpanded {
        let span = UnsafeRawBufferPointer(rebasing: input[lazy.span(i)])
        var checked: [UInt8] = [], trusted: [UInt8] = []
        precondition(StreamingTranscoder.appendMessagePack(fromJSON: span, to: &checked), "a validated span failed to transcode")
        precondition(StreamingTranscoder.appendMessagePack(fromJSON: span, validatedSpan: true, to: &trusted) && trusted == checked,
                     "SY_JSON_VALIDATED_SPAN changed the transcoding")
    }

    // The tape-free transcoder gives exactly the tape encoder's bytes.
    var streamed: [UInt8] = []
    precondition(StreamingTranscoder.appendMessagePack(fromJSON: input, to: &streamed), "streaming transcoder refused valid JSON")
    var fromTape: [UInt8] = []
    tape.appendMessagePack(0, to: &fromTape)
    precondition(streamed == fromTape, "streamed MessagePack differs from the tape's")
    precondition(tape.next(0) == tape.nodeCount)
    var keys = Set<Int>()
    for i in 0..<tape.nodeCount {
        let span = tape.span(i)
        precondition(span.lowerBound < span.upperBound && span.upperBound <= size)
        precondition(tape.next(i) > i && tape.next(i) <= tape.nodeCount)
        if tape.kind(i) == .object {
            for (k, _) in tape.members(of: i) {
                precondition(tape.kind(k) == .string && buffer[tape.span(k).lowerBound] == UInt8(ascii: "\""))
                keys.insert(k)
            }
        }
    }
    let value = canonical(tape.value(0))

    // Spans: each value node's source text decodes to the node's value.
    var piece = DocumentTape()
    for i in 0..<tape.nodeCount where !keys.contains(i) {
        let span = tape.span(i)
        do {
            try JSONTapeDecoder.decode(copying: UnsafeRawBufferPointer(rebasing: buffer[span]), into: &piece)
        } catch {
            fatalError("span \(span) of node \(i) does not decode: \(error)")
        }
        precondition(canonical(piece.value(0)) == canonical(tape.value(i)), "span value differs")
    }

    // JSON → MessagePack → tape.
    var mp: [UInt8] = []
    tape.appendMessagePack(0, to: &mp)
    var fromMP = DocumentTape()
    do {
        try mp.withUnsafeBytes { try MessagePackTapeDecoder.decode($0, into: &fromMP) }
    } catch {
        fatalError("transcoded MessagePack does not decode: \(error)")
    }
    precondition(canonical(fromMP.value(0)) == value, "JSON → MessagePack changed the value")

    // MessagePack tape → JSON → tape.
    var json: [UInt8] = []
    fromMP.appendJSON(0, to: &json)
    var fromJSON = DocumentTape()
    do {
        try JSONTapeDecoder.decode(copying: json, into: &fromJSON)
    } catch {
        fatalError("transcoded JSON does not decode: \(error) \(String(decoding: json, as: UTF8.self))")
    }
    precondition(canonical(fromJSON.value(0)) == value, "MessagePack → JSON changed the value")
    return 0
}


/// The oracle for the known-target decode: the exact bytes of container
/// targets (the first "target" in the root's "d") of inputs the full decode
/// accepted, as the query cache holds targets that decoded. Bounded.
final class FuzzKnownTargets: KnownSpans {
    private var spans: Set<[UInt8]> = []

    func isKnownJSON(_ bytes: UnsafeRawBufferPointer) -> Bool { spans.contains(Array(bytes)) }

    func remember(firstTargetIn tape: DocumentTape, source: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject, let d = tape.member(of: root, named: "d"), tape.kind(d) == .object,
              let target = tape.members(of: d).first(where: { tape.isString($0.key, equalTo: "target") })?.value,
              tape.kind(target) == .object || tape.kind(target) == .array
        else { return }
        if spans.count >= 256 { spans.removeAll() }
        spans.insert(Array(source[tape.span(target)]))
    }
}

let fuzzKnownTargets = FuzzKnownTargets()

/// The envelope template (a routed frame repeated with another payload):
/// every input is spliced in as the payload of the last accepted frame that
/// had one, and the template must decode the result exactly as the full lazy
/// decode does: the same tape when it accepts, and accept whenever the
/// input is that frame's (valid) payload container.
final class FuzzEnvelope {
    private var template = EnvelopeTemplate()
    private var frame: [UInt8] = []
    private var span = 0..<0

    func check(payload: UnsafeRawBufferPointer) {
        if !template.isEmpty {
            let spliced = Array(frame[..<span.lowerBound]) + Array(payload) + Array(frame[span.upperBound...])
            let start = span.lowerBound
            withPadded(spliced) { input in
                var viaTemplate = DocumentTape()
                let hit = template.decode(input, into: &viaTemplate)
                var full = DocumentTape()
                let accepted = (try? JSONTapeDecoder.decode(input, into: &full, lazyPayload: true)) != nil
                if hit {
                    precondition(accepted, "the envelope template accepted what the full decode refuses")
                    precondition(sameTape(viaTemplate, full), "the envelope template's tape differs")
                } else if accepted, let p = payloadNode(full), full.span(p) == start..<(start + payload.count) {
                    preconditionFailure("the envelope template refused a valid payload")
                }
            }
        }
        // Remember this input when it is itself a frame with a payload.
        var tape = DocumentTape()
        guard (try? JSONTapeDecoder.decode(payload, into: &tape, lazyPayload: true)) != nil,
              let p = payloadNode(tape) else { return }
        template.remember(tape, source: payload, payload: p, depth: 2)
        if !template.isEmpty {
            frame = Array(payload)
            span = tape.span(p)
        }
    }

    private func payloadNode(_ tape: DocumentTape) -> Int? {
        guard let root = tape.rootObject, let d = tape.member(of: root, named: "d"),
              let p = tape.member(of: d, named: "payload"), tape.kind(p) == .unexpanded else { return nil }
        return p
    }

    private func withPadded(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) -> Void) {
        let padded = bytes + [UInt8](repeating: 0, count: Int(sy_json_padding()))
        padded.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count])) }
    }

    private func sameTape(_ a: DocumentTape, _ b: DocumentTape) -> Bool {
        guard a.nodeCount == b.nodeCount, a.stringCount == b.stringCount, a.hasUnexpanded == b.hasUnexpanded else { return false }
        for (x, y) in zip(a.nodes, b.nodes) {
            guard x.kind == y.kind, x.count == y.count, x.next == y.next, x.spanStart == y.spanStart,
                  x.spanEnd == y.spanEnd, x.stringLength == y.stringLength, x.bits == y.bits else { return false }
        }
        return a.stringStorage[0..<a.stringCount] == b.stringStorage[0..<b.stringCount]
    }
}

let fuzzEnvelope = FuzzEnvelope()
