import Testing
@testable import Singyeong

/// Node for node (kind, count, next, span, string length, bits) and string
/// for string, whether two tapes are the same.
func sameTape(_ a: DocumentTape, _ b: DocumentTape) -> Bool {
    guard a.nodeCount == b.nodeCount, a.stringCount == b.stringCount, a.hasUnexpanded == b.hasUnexpanded else { return false }
    for (x, y) in zip(a.nodes, b.nodes) {
        guard x.kind == y.kind, x.count == y.count, x.next == y.next, x.spanStart == y.spanStart, x.spanEnd == y.spanEnd,
              x.stringLength == y.stringLength, x.bits == y.bits else { return false }
    }
    return a.stringStorage[0..<a.stringCount] == b.stringStorage[0..<b.stringCount]
}

/// Runs `body` on `text`'s bytes followed by decoder padding.
private func withPadded<R>(_ text: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    withPadded(bytes: Array(text.utf8), body)
}

private func withPadded<R>(bytes: [UInt8], _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
    return padded.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count])) }
}

/// The lazy decode the gateway does without a template (nil when refused).
private func lazyDecode(_ text: String) -> DocumentTape? {
    withPadded(text) { input in
        var tape = DocumentTape()
        return (try? JSONTapeDecoder.decode(input, into: &tape, lazyPayload: true)) != nil ? tape : nil
    }
}

/// A template remembering `text` around its "d" → "payload".
private func template(_ text: String) throws -> EnvelopeTemplate {
    let tape = try #require(lazyDecode(text))
    let d = try #require(tape.member(of: tape.root, named: "d"))
    let payload = try #require(tape.member(of: d, named: "payload"))
    var template = EnvelopeTemplate()
    withPadded(text) { template.remember(tape, source: $0, payload: payload, depth: 2) }
    return template
}

/// `EnvelopeTemplate`: a frame that repeats the remembered envelope around a
/// valid array or object gets exactly the tape a full decode gives; any
/// other frame is left to the full decode.
@Suite struct EnvelopeTemplateTests {
    static let first = #"{"op":4,"t":"SEND","d":{"target":{"application":"a","ops":[]},"nonce":7,"payload":{"n":1}},"ts":5}"#

    static func frame(_ payload: String, nonce: String = "7", ts: String = "5") -> String {
        #"{"op":4,"t":"SEND","d":{"target":{"application":"a","ops":[]},"nonce":\#(nonce),"payload":\#(payload)},"ts":\#(ts)}"#
    }

    /// (frame, whether the template decodes it)
    static let cases: [(String, Bool)] = [
        (first, true),
        (frame(#"{"n":2}"#), true),
        (frame(#"{"longer":[1,2,{"x":"}]\"{["}],"s":"\u00e9"}"#), true),
        (frame("[]"), true),
        (frame("{}"), true),
        // Nesting: the payload sits at depth 2; depth 64 is refused.
        (frame(String(repeating: "[", count: 62) + String(repeating: "]", count: 62)), true),
        (frame(String(repeating: "[", count: 63) + String(repeating: "]", count: 63)), false),
        // Not the envelope: another nonce, ts, or target.
        (frame(#"{"n":2}"#, nonce: "8"), false),
        (frame(#"{"n":2}"#, ts: "6"), false),
        (first.replacingOccurrences(of: #""a""#, with: #""b""#), false),
        // Not exactly one array or object between the two.
        (frame("5"), false),
        (frame(#""text""#), false),
        (frame("null"), false),
        (frame(#" {"n":2}"#), false),
        (frame(#"{"n":2} "#), false),
        (frame(#"{"n":2},"x":{"n":3}"#), false),
        (frame(#"{"n":2},"payload":{"n":3}"#), false),
        // Invalid payloads.
        (frame(#"{"n":}"#), false),
        (frame(#"{"n":2"#), false),
        (frame(#"{"n":2]"#), false),
        (frame(#"{"n":"\#u{1}"}"#), false),
        (frame("{\"n\":\"\\x\"}"), false),
        (frame(#"{"n":01}"#), false),
        (frame(#"[1,]"#), false),
        (frame(#"{"n":2}}"#), false),
        (frame(#"{{"n":2}"#), false),
    ]

    @Test(arguments: cases)
    func decodesExactlyAsTheFullDecode(_ text: String, hits: Bool) throws {
        var template = try template(Self.first)
        let full = lazyDecode(text)
        var tape = DocumentTape()
        let hit = withPadded(text) { template.decode($0, into: &tape) }
        #expect(hit == hits)
        if hit {
            let full = try #require(full, "the template accepted what the full decode refuses")
            #expect(sameTape(tape, full))
        }
    }

    /// A payload that is not UTF-8 is refused (by simdjson's stage 1).
    @Test func invalidUTF8() throws {
        var template = try template(Self.first)
        var tape = DocumentTape()
        for bad: [UInt8] in [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0xAF]] {
            let bytes = Array(Self.frame(#"{"n":""#).utf8.dropLast(#"},"ts":5}"#.utf8.count)) + bad
                + Array(#""}},"ts":5}"#.utf8)
            #expect(!withPadded(bytes: bytes) { template.decode($0, into: &tape) })
        }
        // The same shape with valid UTF-8 is accepted (the test above is not vacuous).
        let good = Array(Self.frame(#"{"n":""#).utf8.dropLast(#"},"ts":5}"#.utf8.count)) + [0xC3, 0xA9]
            + Array(#""}},"ts":5}"#.utf8)
        #expect(withPadded(bytes: good) { template.decode($0, into: &tape) })
    }

    /// The suffix may be anything the first frame had after its payload.
    @Test func payloadLastOrFirst() throws {
        let last = #"{"op":4,"t":"BROADCAST","d":{"target":{"application":"a"},"payload":[1]}}"#
        var t = try template(last)
        let next = #"{"op":4,"t":"BROADCAST","d":{"target":{"application":"a"},"payload":[1,2,3]}}"#
        var tape = DocumentTape()
        #expect(withPadded(next) { t.decode($0, into: &tape) })
        #expect(sameTape(tape, try #require(lazyDecode(next))))
        let early = #"{"d":{"payload":{"a":1},"target":{"application":"a"}},"t":"SEND","op":4}"#
        var t2 = try template(early)
        let next2 = #"{"d":{"payload":{"b":[true,false]},"target":{"application":"a"}},"t":"SEND","op":4}"#
        #expect(withPadded(next2) { t2.decode($0, into: &tape) })
        #expect(sameTape(tape, try #require(lazyDecode(next2))))
    }

    /// An envelope over the bounds is not kept; an empty template never hits.
    @Test func bounded() throws {
        var tape = DocumentTape()
        var empty = EnvelopeTemplate()
        #expect(!withPadded(Self.first) { empty.decode($0, into: &tape) })
        let bigTarget = #"{"application":"a","x":""# + String(repeating: "y", count: EnvelopeTemplate.maxBytes) + #""}"#
        let big = #"{"op":4,"t":"SEND","d":{"target":\#(bigTarget),"payload":{}}}"#
        #expect(try template(big).isEmpty)
        let manyNodes = #"{"op":4,"t":"SEND","d":{"target":{"application":"a","x":[\#((0..<70).map(String.init).joined(separator: ","))]},"payload":{}}}"#
        #expect(try template(manyNodes).isEmpty)
        #expect(!(try template(Self.first).isEmpty))
    }
}
