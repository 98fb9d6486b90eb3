import Testing
@testable import Singyeong

// MARK: Helpers

private func decodeJSON(_ text: String) throws(DocumentDecodeError) -> DocumentTape {
    var tape = DocumentTape()
    try JSONTapeDecoder.decode(copying: Array(text.utf8), into: &tape)
    return tape
}

private func decodeJSON(bytes: [UInt8]) throws(DocumentDecodeError) -> DocumentTape {
    var tape = DocumentTape()
    try JSONTapeDecoder.decode(copying: bytes, into: &tape)
    return tape
}

private func decodeMP(_ bytes: [UInt8]) throws(DocumentDecodeError) -> DocumentTape {
    var tape = DocumentTape()
    try MessagePackTapeDecoder.decode(copying: bytes, into: &tape)
    return tape
}

private func spanText(_ text: String, _ tape: DocumentTape, _ i: Int) -> String {
    let bytes = Array(text.utf8)
    return String(decoding: bytes[tape.span(i)], as: UTF8.self)
}

private func obj(_ members: [(String, Value)]) -> Value { .object(ValueObject(members)) }

private func jsonOf(_ v: Value) -> String {
    var out: [UInt8] = []
    v.appendJSON(to: &out)
    return String(decoding: out, as: UTF8.self)
}

private func mpOf(_ v: Value) -> [UInt8] {
    var out: [UInt8] = []
    v.appendMessagePack(to: &out)
    return out
}

/// Every non-key node's span, decoded on its own, gives that node's value.
private func checkSpans(_ tape: DocumentTape, source: [UInt8], json: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    var keyNodes = Set<Int>()
    for i in 0..<tape.nodeCount where tape.kind(i) == .object {
        for (k, _) in tape.members(of: i) { keyNodes.insert(k) }
    }
    for i in 0..<tape.nodeCount where !keyNodes.contains(i) {
        let piece = Array(source[tape.span(i)])
        let again = json ? try? decodeJSON(bytes: piece) : try? decodeMP(piece)
        #expect(again?.value(0) == tape.value(i), "span of node \(i)", sourceLocation: sourceLocation)
    }
}

// MARK: JSON decoding

@Suite struct JSONTapeDecoderTests {
    /// Every buffer handed to simdjson is padded with `InputBuffer.padding`
    /// bytes; simdjson must never need more (csimdjson.cpp also checks this
    /// at compile time).
    @Test func paddingFitsInputBufferPadding() {
        #expect(JSONTapeDecoder.padding > 0)
        #expect(JSONTapeDecoder.padding <= InputBuffer.padding)
    }

    static let scalars: [(String, Value)] = [
        ("1", .int(1)), ("0", .int(0)), ("-1", .int(-1)), ("-0", .int(0)),
        ("1.0", .double(1)), ("1e3", .double(1000)), ("1E3", .double(1000)), ("-0.0", .double(-0.0)),
        ("0.5", .double(0.5)), ("2.5e-3", .double(0.0025)),
        ("9223372036854775807", .int(.max)), ("-9223372036854775808", .int(.min)),
        ("9223372036854775808", .uint(9_223_372_036_854_775_808)),
        ("18446744073709551615", .uint(.max)),
        ("18446744073709551616", .double(18_446_744_073_709_551_616.0)),
        ("184467044073709551616", .double(184_467_044_073_709_551_616.0)),  // fuzz find: simdjson's root parser truncated this
        ("[184467044073709551616]", .array([.double(184_467_044_073_709_551_616.0)])),
        ("-9223372036854775809", .double(-9_223_372_036_854_775_809.0)),
        ("true", .bool(true)), ("false", .bool(false)), ("null", .null),
        ("\"\"", .string("")), ("\"abc\"", .string("abc")), (" \n\t 42 \r\n", .int(42)),
        (#""\u00e9""#, .string("é")), (#""\ud83d\ude00""#, .string("😀")), ("\"héllo 😀\"", .string("héllo 😀")),
        (#""a\"b\\c\/d\b\f\n\r\t""#, .string("a\"b\\c/d\u{8}\u{c}\n\r\t")), (#""\u0000x""#, .string("\u{0}x")),
        ("[]", .array([])), ("{}", obj([])), ("[[[]]]", .array([.array([.array([])])])),
    ]

    @Test(arguments: scalars)
    func decodesValue(_ text: String, _ expected: Value) throws {
        let tape = try decodeJSON(text)
        #expect(tape.value(tape.root) == expected)
        #expect(tape.next(0) == tape.nodeCount)
        // The root span is the text without surrounding whitespace.
        let trimmed = String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
        #expect(spanText(text, tape, 0) == trimmed)
    }

    /// Unbalanced containers are refused whatever follows the input (the
    /// bytes after it may be the next frame): fuzz find in simdjson 3.0.1's
    /// On-Demand, which otherwise read past the input.
    @Test(arguments: [
        ("{\"a\":{\"b\":", "}"), ("{\"a\":{\"b\":1}", "}"), ("[[1]", "]"), ("[{\"a\":[1]}", "}]"),
        ("{\"a\":[1}", "]}"), ("{\"a\":1", " "), ("[1,2", "]"), ("{\"k\":\"}\"", "}"),
    ] as [(String, String)])
    func unbalancedContainersRefused(_ text: String, _ following: String) {
        var bytes = Array(text.utf8) + Array(following.utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "}"), count: JSONTapeDecoder.padding)
        var tape = DocumentTape()
        let count = text.utf8.count
        let accepted = bytes.withUnsafeBytes { raw -> Bool in
            do { try JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), into: &tape); return true } catch { return false }
        }
        #expect(!accepted, "\(text) followed by \(following)")
        // A balanced document with closing brackets after it is still fine.
        var ok = Array("{\"a\":[1,{\"b\":\"}]\"}]}".utf8)
        let okCount = ok.count
        ok += [UInt8](repeating: UInt8(ascii: "}"), count: JSONTapeDecoder.padding)
        let decoded = ok.withUnsafeBytes { raw -> Bool in
            do { try JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<okCount]), into: &tape); return true } catch { return false }
        }
        #expect(decoded)
    }

    @Test func numberKinds() throws {
        let tape = try decodeJSON("[1, 1.0, 1e3, -0, 18446744073709551615, 18446744073709551616]")
        let kinds = tape.elements(of: 0).map { tape.kind($0) }
        #expect(kinds == [.int, .double, .double, .int, .uint, .double])
        let e = Array(tape.elements(of: 0))
        #expect(tape.int64(e[0]) == 1)
        #expect(tape.int64(e[1]) == nil)
        #expect(tape.uint64(e[0]) == 1)
        #expect(tape.uint64(e[4]) == .max)
        #expect(tape.double(e[2]) == 1000)
    }

    @Test func sendFrameNavigationAndSpans() throws {
        let text = #"{"op":4,"d":{"payload": [1, {"a":"b"}] ,"x":1}}"#
        let tape = try decodeJSON(text)
        let op = try #require(tape.member(of: 0, named: "op"))
        #expect(tape.int64(op) == 4)
        let d = try #require(tape.member(of: 0, named: "d"))
        #expect(spanText(text, tape, d) == #"{"payload": [1, {"a":"b"}] ,"x":1}"#)
        let payload = try #require(tape.member(of: d, named: "payload"))
        #expect(spanText(text, tape, payload) == #"[1, {"a":"b"}]"#)
        let elements = Array(tape.elements(of: payload))
        #expect(elements.count == 2)
        #expect(spanText(text, tape, elements[0]) == "1")
        #expect(spanText(text, tape, elements[1]) == #"{"a":"b"}"#)
        let keys = tape.members(of: d).map { spanText(text, tape, $0.key) }
        #expect(keys == [#""payload""#, #""x""#])
        #expect(tape.member(of: 0, named: "t") == nil)
        #expect(tape.member(of: op, named: "x") == nil)
        #expect(tape.count(0) == 2)
        #expect(tape.next(0) == tape.nodeCount)
        checkSpans(tape, source: Array(text.utf8), json: true)
    }

    @Test func spansWithWhitespaceAndEscapes() throws {
        let text = " { \"a\" : [ ] , \"b\\\"q\" : { } ,\n\"c\" : \"x\\\"y\" , \"d\" : [ 1 , [ 2 ] ] , \"e\" : -1.5e2 } "
        let tape = try decodeJSON(text)
        #expect(spanText(text, tape, 0) == String(text.dropFirst().dropLast()))
        let spans = tape.members(of: 0).map { (spanText(text, tape, $0.key), spanText(text, tape, $0.value)) }
        #expect(spans.map(\.0) == ["\"a\"", "\"b\\\"q\"", "\"c\"", "\"d\"", "\"e\""])
        #expect(spans.map(\.1) == ["[ ]", "{ }", "\"x\\\"y\"", "[ 1 , [ 2 ] ]", "-1.5e2"])
        #expect(tape.isString(tape.members(of: 0).map(\.key)[1], equalTo: "b\"q"))
        checkSpans(tape, source: Array(text.utf8), json: true)
    }

    @Test func memberLookupLastDuplicateWins() throws {
        let tape = try decodeJSON(#"{"a":1,"b":2,"a":3}"#)
        #expect(tape.member(of: 0, named: "a").flatMap { tape.int64($0) } == 3)
        #expect(tape.members(of: 0).map { tape.string($0.key) } == ["a", "b", "a"])
        #expect(tape.value(0) == obj([("a", .int(3)), ("b", .int(2))]))
    }

    @Test func siblingsSkipInConstantSteps() throws {
        let tape = try decodeJSON(#"[{"a":[1,2,{"b":[3]}]},"s",[[],[[]]],4]"#)
        let e = Array(tape.elements(of: 0))
        #expect(e.count == 4)
        #expect(tape.string(e[1]) == "s")
        #expect(tape.int64(e[3]) == 4)
        #expect(tape.next(e[3]) == tape.nodeCount)
    }

    static let invalid: [String] = [
        "", " ", "{", "}", "[1,", "[1,]", "{\"a\":1", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "1 2", "{} x", "[] []",
        "[1]]", "tru", "nul", "nulll", "truex", "hello", "\"abc", "01", "-01", "1.", "-", "--1", "1-", "0x10", ".5", "+1", "[\"\\x\"]",
        "\"\\ud800\"", "\"a\nb\"", "1e400", "NaN", "Infinity", "[1 2]", "{\"a\" 1}", "'a'",
        // Found by the JSON fuzz target: a NUL after a root atom.
        "null\u{0}\n", "true\u{0}", "12\u{0}", "[null\u{0}]", "nulll\n", "truex\n", "falsey ", "nul\n",
        // Found by the JSON fuzz target: a member inside an array after a
        // string taken verbatim (the value must still be consumed).
        #"["a":1]"#, #"[1,"t":"x","d":{}},"x"]"#, #"{"a":[1,"t":"x","d":{"p":1}},"x",true],"b":1}"#,
        #"{"d":{"payload":{"a":[1,"t":"x","d":{}},"x"]}}}"#,
        // Found by the JSON fuzz target: bytes that are neither structural
        // nor whitespace after a nested atom (simdjson keeps them in the
        // scalar's token).
        "[2\u{0}]", "[2@]", "[-1\u{1}, 3]", "{\"a\":2\u{0}@x}", "[true@]", "[null\u{1}]", "[1.5\u{0}]",
        "{\"d\":{\"payload\":{\"a\":[2\u{0}\\\\\",null,true]}}}",
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(_ text: String) {
        #expect(throws: DocumentDecodeError.self) { try decodeJSON(text) }
    }

    @Test func rejectsInvalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x5B, 0x31, 0x5D, 0x20, 0xFE]] {
            #expect(throws: DocumentDecodeError.self) { try decodeJSON(bytes: bytes) }
        }
    }

    @Test func depthLimit() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try decodeJSON(ok)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: DocumentDecodeError.self) { try decodeJSON(tooDeep) }
        let bomb = String(repeating: "{\"a\":[", count: 5000) + "1" + String(repeating: "]}", count: 5000)
        #expect(throws: DocumentDecodeError.self) { try decodeJSON(bomb) }
        #expect(throws: DocumentDecodeError.self) { try decodeJSON(String(repeating: "[", count: 100_000)) }
    }

    @Test func tapeReuseAndGrowth() throws {
        var tape = DocumentTape()
        let big = "[" + (0..<5000).map { "\"s\($0)\"" }.joined(separator: ",") + "]"
        try JSONTapeDecoder.decode(copying: Array(big.utf8), into: &tape)
        #expect(tape.nodeCount == 5001)
        #expect(tape.string(5000) == "s4999")
        try JSONTapeDecoder.decode(copying: Array(#"{"x":"y"}"#.utf8), into: &tape)
        #expect(tape.nodeCount == 3)
        #expect(tape.value(0) == obj([("x", .string("y"))]))
        #expect(throws: DocumentDecodeError.self) { try JSONTapeDecoder.decode(copying: Array("[1".utf8), into: &tape) }
    }

    @Test func nodeLayoutMatchesC() {
        typealias N = DocumentTape.Node
        #expect(MemoryLayout<N>.size == 32)
        #expect(MemoryLayout<N>.stride == 32)
        #expect(MemoryLayout<N>.offset(of: \N.kind) == 0)
        #expect(MemoryLayout<N>.offset(of: \N.count) == 4)
        #expect(MemoryLayout<N>.offset(of: \N.next) == 8)
        #expect(MemoryLayout<N>.offset(of: \N.spanStart) == 12)
        #expect(MemoryLayout<N>.offset(of: \N.spanEnd) == 16)
        #expect(MemoryLayout<N>.offset(of: \N.stringLength) == 20)
        #expect(MemoryLayout<N>.offset(of: \N.bits) == 24)
    }
}

// MARK: MessagePack decoding

@Suite struct MessagePackTapeDecoderTests {
    static let formats: [([UInt8], Value)] = [
        ([0x00], .int(0)), ([0x7F], .int(127)), ([0xFF], .int(-1)), ([0xE0], .int(-32)),
        ([0xCC, 0xFF], .int(255)), ([0xCD, 0x01, 0x00], .int(256)), ([0xCE, 0xFF, 0xFF, 0xFF, 0xFF], .int(4_294_967_295)),
        ([0xCF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], .int(.max)),
        ([0xCF, 0x80, 0, 0, 0, 0, 0, 0, 0], .uint(9_223_372_036_854_775_808)),
        ([0xCF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], .uint(.max)),
        ([0xD0, 0x80], .int(-128)), ([0xD0, 0x05], .int(5)), ([0xD1, 0x80, 0x00], .int(-32768)),
        ([0xD2, 0x80, 0, 0, 0], .int(-2_147_483_648)), ([0xD3, 0x80, 0, 0, 0, 0, 0, 0, 0], .int(.min)),
        ([0xCA, 0x3F, 0xC0, 0x00, 0x00], .double(1.5)), ([0xCA, 0x7F, 0x80, 0, 0], .double(.infinity)),
        ([0xCB, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0], .double(1.5)),
        ([0xA0], .string("")), ([0xA3, 0x61, 0x62, 0x63], .string("abc")),
        ([0xD9, 0x02, 0xC3, 0xA9], .string("é")), ([0xDA, 0x00, 0x01, 0x61], .string("a")),
        ([0xDB, 0x00, 0x00, 0x00, 0x01, 0x61], .string("a")),
        ([0xC4, 0x02, 0x68, 0x69], .string("hi")), ([0xC5, 0x00, 0x01, 0x68], .string("h")),
        ([0xC6, 0x00, 0x00, 0x00, 0x04, 0xF0, 0x9F, 0x98, 0x80], .string("😀")),
        ([0xC0], .null), ([0xC2], .bool(false)), ([0xC3], .bool(true)),
        ([0x90], .array([])), ([0x92, 0x01, 0xC0], .array([.int(1), .null])),
        ([0xDC, 0x00, 0x01, 0x07], .array([.int(7)])), ([0xDD, 0x00, 0x00, 0x00, 0x02, 0xC3, 0xC2], .array([.bool(true), .bool(false)])),
        ([0x80], obj([])), ([0x81, 0xA1, 0x61, 0x01], obj([("a", .int(1))])),
        ([0xDE, 0x00, 0x01, 0xA1, 0x61, 0x02], obj([("a", .int(2))])),
        ([0xDF, 0x00, 0x00, 0x00, 0x01, 0xA1, 0x61, 0x03], obj([("a", .int(3))])),
        ([0x81, 0xC4, 0x01, 0x62, 0x01], obj([("b", .int(1))])),
        // Integer keys become decimal strings.
        ([0x83, 0x05, 0xA0, 0xFF, 0xA0, 0xD3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xA0],
         obj([("5", .string("")), ("-1", .string("")), ("-9223372036854775808", .string(""))])),
        ([0x81, 0xCF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC0], obj([("18446744073709551615", .null)])),
        // Repeated keys: last wins.
        ([0x82, 0xA1, 0x61, 0x01, 0xA1, 0x61, 0x02], obj([("a", .int(2))])),
    ]

    @Test(arguments: formats)
    func decodesFormat(_ bytes: [UInt8], _ expected: Value) throws {
        let tape = try decodeMP(bytes)
        #expect(tape.value(0) == expected)
        #expect(tape.span(0) == 0..<bytes.count)
        #expect(tape.next(0) == tape.nodeCount)
    }

    @Test func integerKeyLookup() throws {
        let tape = try decodeMP([0x82, 0x05, 0x01, 0xA2, 0x6F, 0x70, 0x04])
        #expect(tape.member(of: 0, named: "5").flatMap { tape.int64($0) } == 1)
        #expect(tape.member(of: 0, named: "op").flatMap { tape.int64($0) } == 4)
        #expect(tape.span(1) == 1..<2)  // the key's span is the encoded integer
    }

    static let invalid: [[UInt8]] = [
        [], [0xC1], [0x01, 0x02], [0xC0, 0xC0],
        [0xD4, 0x01, 0x00], [0xD5, 0x01, 0, 0], [0xD6, 0xFF, 0, 0, 0, 0], [0xD7, 0x01] + [UInt8](repeating: 0, count: 8),
        [0xD8, 0x01] + [UInt8](repeating: 0, count: 16), [0xC7, 0x01, 0x01, 0x00], [0xC8, 0x00, 0x01, 0x01, 0x00],
        [0xC9, 0, 0, 0, 1, 0x01, 0x00],
        [0xC4, 0x01, 0xFF], [0xC5, 0x00, 0x02, 0xC3, 0x28], [0xC6, 0, 0, 0, 1, 0x80],
        [0xA1, 0xFF], [0xA2, 0xED, 0xA0], [0xA3, 0xED, 0xA0, 0x80], [0xA2, 0xC0, 0x80], [0xA4, 0xF4, 0x90, 0x80, 0x80],
        [0x81, 0xC0, 0x01], [0x81, 0xC2, 0x01], [0x81, 0xCB, 0, 0, 0, 0, 0, 0, 0, 0, 0x01], [0x81, 0xCA, 0, 0, 0, 0, 0x01],
        [0x81, 0x90, 0x01], [0x81, 0x80, 0x01], [0x81, 0xD4, 0x01, 0x00, 0x01],
        // Forged huge lengths.
        [0xDD, 0xFF, 0xFF, 0xFF, 0xFF], [0xDF, 0xFF, 0xFF, 0xFF, 0xFF], [0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61],
        [0xC6, 0xFF, 0xFF, 0xFF, 0xFF, 0x61], [0xDC, 0xFF, 0xFF, 0x01], [0xDE, 0xFF, 0xFF, 0xA1, 0x61, 0x01],
        [0x9F, 0x01], [0x8F, 0xA1, 0x61],
    ]

    @Test(arguments: invalid)
    func rejects(_ bytes: [UInt8]) {
        var tape = DocumentTape()
        #expect(throws: DocumentDecodeError.self) { try MessagePackTapeDecoder.decode(copying: bytes, into: &tape) }
        #expect(tape.nodeCount == 0)
    }

    @Test func depthLimit() throws {
        _ = try decodeMP([UInt8](repeating: 0x91, count: 64) + [0xC0])
        #expect(throws: DocumentDecodeError.self) { try decodeMP([UInt8](repeating: 0x91, count: 65) + [0xC0]) }
        #expect(throws: DocumentDecodeError.self) { try decodeMP([UInt8](repeating: 0x81, count: 10_000)) }
    }

    static let sample: Value = obj([
        ("op", .int(4)), ("t", .string("SEND")),
        ("d", obj([
            ("payload", .array([.int(1), .int(-200), .int(70_000), .int(-70_000), .int(.min), .uint(.max), .double(0.1),
                                .string(String(repeating: "x", count: 40)), .string(String(repeating: "y", count: 300)),
                                .null, .bool(true), obj([("k", .array(Array(repeating: .int(3), count: 20)))])])),
            ("nonce", .string("é😀")),
        ])),
    ])

    @Test func truncatedAtEveryByteFails() throws {
        let bytes = mpOf(Self.sample)
        #expect(try decodeMP(bytes).value(0) == Self.sample)
        for cut in 0..<bytes.count {
            #expect(throws: DocumentDecodeError.self) { try decodeMP(Array(bytes[..<cut])) }
        }
    }

    @Test func spansAreEncodedBytes() throws {
        var bytes = mpOf(Self.sample)
        // Exercise every container/str header size too.
        bytes = [0x93] + bytes + [0xDC, 0x00, 0x01, 0xC0] + [0xDE, 0x00, 0x01, 0xC4, 0x01, 0x61, 0xCA, 0x3F, 0x80, 0, 0]
        let tape = try decodeMP(bytes)
        checkSpans(tape, source: bytes, json: false)
    }
}

// MARK: Encoders and round trips

@Suite struct CodecEncoderTests {
    @Test func valueToJSON() {
        let v = obj([("a", .array([.int(1), .int(-2), .uint(.max), .double(1.5), .double(1), .double(1e-5), .double(1e16),
                                   .double(-0.0), .string("x\"\\\n\u{1}\u{1f}é/"), .bool(true), .bool(false), .null,
                                   .double(.nan), .double(.infinity)])),
                     ("b", obj([]))])
        #expect(jsonOf(v) == #"{"a":[1,-2,18446744073709551615,1.5,1.0,1e-05,1e+16,-0.0,"x\"\\\n\u0001\u001fé/",true,false,null,null,null],"b":{}}"#)
        #expect(jsonOf(.int(.min)) == "-9223372036854775808")
        #expect(jsonOf(.string("\u{8}\u{c}\r\t")) == #""\b\f\r\t""#)
    }

    static let intEncodings: [(Value, [UInt8])] = [
        (.int(0), [0x00]), (.int(127), [0x7F]), (.int(128), [0xCC, 0x80]), (.int(255), [0xCC, 0xFF]),
        (.int(256), [0xCD, 0x01, 0x00]), (.int(65535), [0xCD, 0xFF, 0xFF]), (.int(65536), [0xCE, 0, 1, 0, 0]),
        (.int(4_294_967_296), [0xCF, 0, 0, 0, 1, 0, 0, 0, 0]), (.uint(.max), [0xCF] + [UInt8](repeating: 0xFF, count: 8)),
        (.int(-1), [0xFF]), (.int(-32), [0xE0]), (.int(-33), [0xD0, 0xDF]), (.int(-128), [0xD0, 0x80]),
        (.int(-129), [0xD1, 0xFF, 0x7F]), (.int(-32768), [0xD1, 0x80, 0x00]), (.int(-32769), [0xD2, 0xFF, 0xFF, 0x7F, 0xFF]),
        (.int(-2_147_483_649), [0xD3, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF]),
        (.double(1.5), [0xCB, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0]), (.null, [0xC0]), (.bool(true), [0xC3]), (.bool(false), [0xC2]),
        (.string(""), [0xA0]),
    ]

    @Test(arguments: intEncodings)
    func valueToMessagePack(_ v: Value, _ expected: [UInt8]) {
        #expect(mpOf(v) == expected)
    }

    @Test func messagePackHeaderSizes() {
        func header(_ v: Value, _ n: Int) -> [UInt8] { Array(mpOf(v).prefix(n)) }
        #expect(header(.string(String(repeating: "a", count: 31)), 1) == [0xBF])
        #expect(header(.string(String(repeating: "a", count: 32)), 2) == [0xD9, 32])
        #expect(header(.string(String(repeating: "a", count: 256)), 3) == [0xDA, 1, 0])
        #expect(header(.string(String(repeating: "a", count: 65536)), 5) == [0xDB, 0, 1, 0, 0])
        #expect(header(.array(Array(repeating: .null, count: 15)), 1) == [0x9F])
        #expect(header(.array(Array(repeating: .null, count: 16)), 3) == [0xDC, 0, 16])
        #expect(header(.array(Array(repeating: .null, count: 65536)), 5) == [0xDD, 0, 1, 0, 0])
        let map15 = obj((0..<15).map { ("k\($0)", .null) }), map16 = obj((0..<16).map { ("k\($0)", .null) })
        #expect(header(map15, 1) == [0x8F])
        #expect(header(map16, 3) == [0xDE, 0, 16])
    }

    static let roundTripDocs: [String] = [
        #"{"op":4,"t":"SEND","d":{"target":{"application":"app","ops":[{"path":"/latency","op":"$lt","to":{"value":100}}]},"nonce":"abc","payload":{"hello":"world","n":[1,2,3],"nested":{"x":1.5,"y":"some text here"}}}}"#,
        #"[1,1.0,1e3,-0,-0.0,9223372036854775807,-9223372036854775808,18446744073709551615,18446744073709551616,0.1,1e-300,5e-324,1.7976931348623157e308]"#,
        #"["\u00e9\ud83d\ude00","a\"b\\c\n\u0001\u001f",{"":null,"k":[true,false,{}]},[]]"#,
        #"{"a":1,"a":2}"#, "\"just a string\"", "12", "null",
    ]

    @Test(arguments: roundTripDocs)
    func jsonToMessagePackToJSON(_ text: String) throws {
        let first = try decodeJSON(text)
        var mp: [UInt8] = []
        first.appendMessagePack(0, to: &mp)
        let second = try decodeMP(mp)
        #expect(second.value(0) == first.value(0))
        #expect(second.nodeCount == first.nodeCount)
        var json: [UInt8] = []
        second.appendJSON(0, to: &json)
        let third = try decodeJSON(bytes: json)
        #expect(third.value(0) == first.value(0))
        // Kinds survive (int vs double vs uint) node by node.
        #expect((0..<first.nodeCount).map { first.kind($0) } == (0..<third.nodeCount).map { third.kind($0) })
        // Tape encoders agree with the Value encoders when names are unique.
        if !text.contains(#""a":1,"a""#) {
            var fromValue: [UInt8] = []
            first.value(0).appendMessagePack(to: &fromValue)
            #expect(fromValue == mp)
            #expect(jsonOf(first.value(0)) == String(decoding: json, as: UTF8.self))
        }
    }

    @Test func nonFiniteFromMessagePackBecomesNull() throws {
        let tape = try decodeMP([0x92, 0xCA, 0x7F, 0xC0, 0, 0, 0xCB, 0x7F, 0xF0, 0, 0, 0, 0, 0, 0])
        var json: [UInt8] = []
        tape.appendJSON(0, to: &json)
        #expect(String(decoding: json, as: UTF8.self) == "[null,null]")
    }

    /// Seeded random values through both encoders and both decoders.
    @Test func randomRoundTrips() throws {
        var rng = SplitMix64(seed: 0x5EED)
        for _ in 0..<300 {
            let v = randomValue(&rng, depth: 0)
            let json = jsonOf(v)
            #expect(try decodeJSON(json).value(0) == v, "\(json)")
            #expect(try decodeMP(mpOf(v)).value(0) == v)
        }
    }
}

private func randomString(_ rng: inout SplitMix64) -> String {
    let pool: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\u{0}", "\u{1f}", "\u{7f}", "é", "€", "😀", "\u{ffff}", "\u{10ffff}"]
    var s = String.UnicodeScalarView()
    for _ in 0..<Int.random(in: 0...12, using: &rng) { s.append(pool.randomElement(using: &rng)!) }
    return String(s)
}

private func randomValue(_ rng: inout SplitMix64, depth: Int) -> Value {
    switch Int.random(in: 0..<(depth > 4 ? 7 : 9), using: &rng) {
    case 0: return .null
    case 1: return .bool(Bool.random(using: &rng))
    case 2: return .int(Int64(bitPattern: rng.next()) >> Int64.random(in: 0...63, using: &rng))
    case 3: return .uint(UInt64(Int64.max) + 1 + rng.next() % UInt64(Int64.max))
    case 4:
        var d: Double
        repeat { d = Double(bitPattern: rng.next()) } while !d.isFinite
        return .double(d)
    case 5: return .double(Double(Int.random(in: -1000...1000, using: &rng)) / 8)
    case 6: return .string(randomString(&rng))
    case 7: return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) })
    default:
        var o = ValueObject()
        for _ in 0..<Int.random(in: 0...5, using: &rng) { o[randomString(&rng)] = randomValue(&rng, depth: depth + 1) }
        return .object(o)
    }
}

// MARK: Lazy payloads

/// `lazyPayload`: a container at root → "d" → "payload" is validated by the
/// same rules but becomes one `.unexpanded` node with its span; nothing else
/// changes. Both decoders.
private func lazyJSON(_ bytes: [UInt8]) -> Result<DocumentTape, DocumentDecodeError> {
    let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
    var tape = DocumentTape()
    let error: DocumentDecodeError? = padded.withUnsafeBytes { raw in
        do throws(DocumentDecodeError) {
            try JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<bytes.count]), into: &tape, lazyPayload: true)
            return nil
        } catch { return error }
    }
    if let error { return .failure(error) }
    return .success(tape)
}

private func lazyMP(_ bytes: [UInt8]) -> Result<DocumentTape, DocumentDecodeError> {
    var tape = DocumentTape()
    let error: DocumentDecodeError? = bytes.withUnsafeBytes { raw in
        do throws(DocumentDecodeError) {
            try MessagePackTapeDecoder.decode(raw, into: &tape, lazyPayload: true)
            return nil
        } catch { return error }
    }
    if let error { return .failure(error) }
    return .success(tape)
}

@Suite struct LazyPayloadTests {
    /// (frame, whether the payload is unexpanded)
    static let jsonCases: [(String, Bool)] = [
        (#"{"op":4,"t":"SEND","d":{"target":{},"payload":{"a":[1,{"b":2}]},"nonce":1}}"#, true),
        (#"{"d":{"payload":[]}}"#, true),
        (#"{"d":{"payload":"text"}}"#, false),          // scalars stay decoded
        (#"{"d":{"payload":null}}"#, false),
        (#"{"payload":{"a":1}}"#, false),               // not under "d"
        (#"{"d":{"x":{"payload":{"a":1}}}}"#, false),   // deeper
        (#"{"x":{"d":{"payload":{"a":1}}}}"#, false),   // "d" not at the root
        (#"[{"d":{"payload":{"a":1}}}]"#, false),       // root not an object
    ]

    @Test(arguments: jsonCases)
    func json(_ text: String, unexpanded: Bool) throws {
        let full = try decodeJSON(text)
        let lazyTape = try lazyJSON(Array(text.utf8)).get()
        #expect(lazyTape.hasUnexpanded == unexpanded)
        #expect(!full.hasUnexpanded)
        Self.compare(lazy: lazyTape, full: full, source: Array(text.utf8))
    }

    static let msgpackCases: [([UInt8], Bool)] = [
        // {"d": {"payload": {"a": [1]}}}
        ([0x81, 0xA1, 0x64, 0x81, 0xA7] + Array("payload".utf8) + [0x81, 0xA1, 0x61, 0x91, 0x01], true),
        // {"d": {"payload": [] (array16)}}
        ([0x81, 0xA1, 0x64, 0x81, 0xA7] + Array("payload".utf8) + [0xDC, 0x00, 0x00], true),
        // {"d": {"payload": 5}}
        ([0x81, 0xA1, 0x64, 0x81, 0xA7] + Array("payload".utf8) + [0x05], false),
        // {"payload": {}}
        ([0x81, 0xA7] + Array("payload".utf8) + [0x80], false),
    ]

    @Test(arguments: msgpackCases)
    func msgpack(_ bytes: [UInt8], unexpanded: Bool) throws {
        let full = try decodeMP(bytes)
        let lazy = try lazyMP(bytes).get()
        #expect(lazy.hasUnexpanded == unexpanded)
        Self.compare(lazy: lazy, full: full, source: bytes)
    }

    /// Errors inside a lazy payload are the full decoder's errors.
    static let invalidJSON: [String] = [
        #"{"d":{"payload":[1,tru]}}"#,
        #"{"d":{"payload":{"a" 1}}}"#,
        #"{"d":{"payload":[1,]}}"#,
        #"{"d":{"payload":["\x"]}}"#,
        #"{"d":{"payload":[01]}}"#,
        #"{"d":{"payload":"# + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}}",
    ]

    @Test(arguments: invalidJSON)
    func invalidJSONIsRefusedTheSame(_ text: String) {
        var lazyError: DocumentDecodeError?
        if case .failure(let e) = lazyJSON(Array(text.utf8)) { lazyError = e }
        var fullError: DocumentDecodeError?
        do throws(DocumentDecodeError) { _ = try decodeJSON(text) } catch { fullError = error }
        #expect(fullError != nil)
        #expect(lazyError?.description == fullError?.description)
    }

    static let invalidMessagePack: [[UInt8]] = [
        [0xC1],                      // invalid byte
        [0xD4, 0x01, 0x02],          // ext
        [0xA2, 0xFF, 0xFE],          // not UTF-8
        [0x92, 0x01],                // truncated
        [0x81, 0xC0, 0x01],          // nil key
        Array(repeating: 0x91, count: 70) + [0x01],  // too deep
    ]

    @Test(arguments: invalidMessagePack)
    func invalidMessagePackIsRefusedTheSame(_ payload: [UInt8]) {
        // {"d": {"payload": [payload]}} — wrapped in an array so the payload is a container.
        let frame: [UInt8] = [0x81, 0xA1, 0x64, 0x81, 0xA7] + Array("payload".utf8) + [0x91] + payload
        var lazyError: DocumentDecodeError?
        if case .failure(let e) = lazyMP(frame) { lazyError = e }
        var fullError: DocumentDecodeError?
        do throws(DocumentDecodeError) { _ = try decodeMP(frame) } catch { fullError = error }
        #expect(fullError != nil)
        #expect(lazyError?.description == fullError?.description)
    }

    /// Node for node the same, except that an unexpanded node stands for the
    /// full tape's whole container, with the same span.
    static func compare(lazy: DocumentTape, full: DocumentTape, source: [UInt8]) {
        var i = 0, j = 0
        while i < lazy.nodeCount && j < full.nodeCount {
            #expect(lazy.span(i) == full.span(j))
            if lazy.kind(i) == .unexpanded {
                #expect(full.kind(j) == .object || full.kind(j) == .array)
                j = full.next(j)
            } else {
                #expect(lazy.kind(i) == full.kind(j))
                j += 1
            }
            i += 1
        }
        #expect(i == lazy.nodeCount && j == full.nodeCount)
    }
}

// MARK: Node limit (MAX_FRAME_VALUES)

/// `maxNodes`: a document needing more nodes is `.tooManyValues`; an
/// unexpanded payload counts as one node. Both decoders, the MessagePack
/// side on the same documents transcoded.
@Suite struct NodeLimitTests {
    /// (document, lazyPayload, limit, node count when accepted / nil when refused)
    static let cases: [(String, Bool, Int, Int?)] = [
        ("[1,2,3]", false, 4, 4),
        ("[1,2,3]", false, 3, nil),
        ("[1,2,3]", false, 1, nil),
        (#"{"a":1,"b":[true,null]}"#, false, 7, 7),       // object, 2 keys, 1, array, 2 scalars
        (#"{"a":1,"b":[true,null]}"#, false, 6, nil),
        ("[[[[[]]]]]", false, 5, 5),
        ("[[[[[]]]]]", false, 4, nil),                      // stopped inside the nesting
        ("7", false, 1, 1),
        ("{}", false, 1, 1),
        // 1 + (d key, d object) + (payload key, unexpanded) = 5 nodes, however large the payload.
        (#"{"d":{"payload":[1,2,3,4,5,6,7,8,9,10]}}"#, true, 5, 5),
        (#"{"d":{"payload":[1,2,3,4,5,6,7,8,9,10]}}"#, true, 4, nil),
        (#"{"d":{"payload":[1,2,3,4,5,6,7,8,9,10]}}"#, false, 15, 15),
        (#"{"d":{"payload":[1,2,3,4,5,6,7,8,9,10]}}"#, false, 14, nil),
        // Values elsewhere in the frame count in full.
        (#"{"d":{"payload":[1],"junk":[1,2,3,4,5,6,7,8]}}"#, true, 15, 15),
        (#"{"d":{"payload":[1],"junk":[1,2,3,4,5,6,7,8]}}"#, true, 14, nil),
    ]

    @Test(arguments: cases)
    func json(_ text: String, lazy: Bool, limit: Int, expected: Int?) {
        let bytes = Array(text.utf8)
        let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
        var tape = DocumentTape()
        let outcome: Result<Int, DocumentDecodeError> = padded.withUnsafeBytes { raw in
            do throws(DocumentDecodeError) {
                try JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<bytes.count]), into: &tape,
                                           lazyPayload: lazy, maxNodes: limit)
                return .success(tape.nodeCount)
            } catch { return .failure(error) }
        }
        Self.check(outcome, limit: limit, expected: expected)
        if expected == nil { #expect(tape.isEmpty) }
    }

    @Test(arguments: cases)
    func msgpack(_ text: String, lazy: Bool, limit: Int, expected: Int?) throws {
        let full = try decodeJSON(text)
        var bytes: [UInt8] = []
        full.appendMessagePack(full.root, to: &bytes)
        var tape = DocumentTape()
        let outcome: Result<Int, DocumentDecodeError> = bytes.withUnsafeBytes { raw in
            do throws(DocumentDecodeError) {
                try MessagePackTapeDecoder.decode(raw, into: &tape, lazyPayload: lazy, maxNodes: limit)
                return .success(tape.nodeCount)
            } catch { return .failure(error) }
        }
        Self.check(outcome, limit: limit, expected: expected)
    }

    /// `DocumentDecoder` picks the decoder for the encoding and passes the
    /// limit and `lazyPayload` on: the same outcome in both encodings, and
    /// without a limit the whole document.
    @Test(arguments: cases)
    func byEncoding(_ text: String, lazy: Bool, limit: Int, expected: Int?) throws {
        let full = try decodeJSON(text)
        var msgpack: [UInt8] = []
        full.appendMessagePack(full.root, to: &msgpack)
        let json = Array(text.utf8) + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
        for (encoding, bytes, count) in [(PayloadEncoding.json, json, text.utf8.count), (.msgpack, msgpack, msgpack.count)] {
            var tape = DocumentTape()
            let outcome: Result<Int, DocumentDecodeError> = bytes.withUnsafeBytes { raw in
                do throws(DocumentDecodeError) {
                    try DocumentDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), encoding: encoding,
                                               into: &tape, lazyPayload: lazy, maxNodes: limit)
                    return .success(tape.nodeCount)
                } catch { return .failure(error) }
            }
            Self.check(outcome, limit: limit, expected: expected)
            let unlimited: Int? = bytes.withUnsafeBytes { raw in
                do throws(DocumentDecodeError) {
                    try DocumentDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), encoding: encoding,
                                               into: &tape)
                    return tape.nodeCount
                } catch { return nil }
            }
            #expect(unlimited == full.nodeCount, "\(encoding)")
        }
    }

    static func check(_ outcome: Result<Int, DocumentDecodeError>, limit: Int, expected: Int?) {
        switch (outcome, expected) {
        case (.success(let n), let e?): #expect(n == e)
        case (.failure(let error), nil): #expect(error == .tooManyValues(limit: limit))
        default: Issue.record("got \(outcome), expected \(expected.map { "\($0) nodes" } ?? "tooManyValues")")
        }
    }
}

// MARK: Streaming transcoders

/// The tape-free transcoders produce exactly the tape encoders' bytes, and
/// refuse exactly what the decoders refuse.
@Suite struct StreamingTranscoderTests {
    static let documents: [String] = [
        #"{"a":[1,-1,-33,-129,-32769,-2147483649,127,128,256,65536,4294967296,9223372036854775807,18446744073709551615]}"#,
        #"[1.5,-0.0,1e300,2.5e-5,0,true,false,null,"","é\n\"\\😀"]"#,
        #"{"a":1,"a":2,"nested":{"x":[[],{}],"y":{"z":[{"k":"v"}]}}}"#,
        #""just a string""#,
        "123456789012345678901234567890",
        "[" + (0..<20).map(String.init).joined(separator: ",") + "]",             // array16
        "{" + (0..<70_000).map { "\"k\($0)\":\($0 % 3)" }.joined(separator: ",") + "}",  // map32
        "[" + (0..<17).map { _ in "{\"a\":[1,2,3]}" }.joined(separator: ",") + "]",
        " [ 1 , { \"b\" : null } ] ",
    ]

    @Test(arguments: documents)
    func jsonToMessagePackMatchesTheTape(_ text: String) throws {
        let bytes = Array(text.utf8)
        let tape = try decodeJSON(bytes: bytes)
        var expected: [UInt8] = []
        tape.appendMessagePack(tape.root, to: &expected)
        let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
        var streamed: [UInt8] = []
        let ok = padded.withUnsafeBytes { StreamingTranscoder.appendMessagePack(fromJSON: UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count]), to: &streamed) }
        #expect(ok)
        #expect(streamed == expected)
        // And back: MessagePack → JSON equals the tape's JSON of that MessagePack.
        let mpTape = try decodeMP(expected)
        var json: [UInt8] = []
        mpTape.appendJSON(mpTape.root, to: &json)
        var streamedJSON: [UInt8] = []
        #expect(expected.withUnsafeBytes { StreamingTranscoder.appendJSON(fromMessagePack: $0, to: &streamedJSON) })
        #expect(streamedJSON == json)
    }

    static let messagePack: [[UInt8]] = [
        [0x82, 0x05, 0xA1, 0x61, 0xFF, 0xC4, 0x01, 0x62],           // integer keys, bin value
        [0x81, 0xCF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC0],
        [0x92, 0xCA, 0x3F, 0xC0, 0x00, 0x00, 0xCB, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0],  // float32, NaN → null
        [0xDC, 0x00, 0x02, 0xD3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xCF, 0x80, 0, 0, 0, 0, 0, 0, 0],
        // Strings longer than the transcoder's 16 KiB output chunk, between short values.
        [0x93, 0x01, 0xDA, 0x9C, 0x40] + Array(repeating: 0x61, count: 39_999) + [0x0A, 0xDA, 0x4E, 0x20]
            + (0..<20_000).map { UInt8(0x20 + $0 % 90) },
    ]

    @Test(arguments: messagePack)
    func messagePackToJSONMatchesTheTape(_ bytes: [UInt8]) throws {
        let tape = try decodeMP(bytes)
        var expected: [UInt8] = []
        tape.appendJSON(tape.root, to: &expected)
        var streamed: [UInt8] = []
        #expect(bytes.withUnsafeBytes { StreamingTranscoder.appendJSON(fromMessagePack: $0, to: &streamed) })
        #expect(streamed == expected)
    }

    static let invalidMessagePack: [[UInt8]] = [
        [], [0xC1], [0xD4, 0x01, 0x02], [0xA2, 0xFF, 0xFE], [0x92, 0x01], [0x81, 0xC0, 0x01],
        [0x01, 0x02],  // trailing bytes
        Array(repeating: 0x91, count: 70) + [0x01],
    ]

    @Test(arguments: invalidMessagePack)
    func invalidMessagePackIsRefused(_ bytes: [UInt8]) {
        var out: [UInt8] = [7]
        #expect(!bytes.withUnsafeBytes { StreamingTranscoder.appendJSON(fromMessagePack: $0, to: &out) })
        #expect(out == [7])
    }

    static let invalidJSON: [String] = ["[1,tru]", "{\"a\" 1}", "[1,]", "[01]", "", "[1] x", String(repeating: "[", count: 70) + String(repeating: "]", count: 70),
                                        #"["a":1]"#, #"[1,"t":"x","d":{}},"x"]"#]

    @Test(arguments: invalidJSON)
    func invalidJSONIsRefused(_ text: String) {
        let bytes = Array(text.utf8)
        let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
        var out: [UInt8] = []
        let ok = padded.withUnsafeBytes { StreamingTranscoder.appendMessagePack(fromJSON: UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count]), to: &out) }
        #expect(!ok)
        #expect(out.isEmpty)
    }
}
