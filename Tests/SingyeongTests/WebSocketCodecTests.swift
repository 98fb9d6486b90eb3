import Testing
@testable import Singyeong

// MARK: - Test helpers

/// How a test frame encodes its payload length; the non-minimal forms check
/// that the decoder accepts them (a documented choice).
enum WebSocketTestLengthForm: Sendable {
    case minimal, forced16, forced64
}

/// Builds a client frame the way a browser would (masked), with knobs to break
/// every rule the decoder enforces. Test-only: the server never masks.
func webSocketRawClientFrame(
    opcode: UInt8,
    _ payload: [UInt8],
    fin: Bool = true,
    rsv: UInt8 = 0,
    masked: Bool = true,
    key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D],
    lengthForm: WebSocketTestLengthForm = .minimal
) -> [UInt8] {
    var frame: [UInt8] = [(fin ? 0x80 : 0) | rsv | opcode]
    let maskBit: UInt8 = masked ? 0x80 : 0
    let n = payload.count
    switch lengthForm {
    case .minimal where n <= 125:
        frame.append(maskBit | UInt8(n))
    case .minimal where n <= 0xFFFF, .forced16:
        frame.append(maskBit | 126)
        frame += [UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    default:
        frame.append(maskBit | 127)
        for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8(UInt64(n) >> UInt64(shift) & 0xFF)) }
    }
    if masked {
        frame += key
        for (i, byte) in payload.enumerated() { frame.append(byte ^ key[i % 4]) }
    } else {
        frame += payload
    }
    return frame
}

func webSocketClientFrame(
    _ opcode: WebSocketOpcode,
    _ payload: [UInt8],
    fin: Bool = true,
    key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D],
    lengthForm: WebSocketTestLengthForm = .minimal
) -> [UInt8] {
    webSocketRawClientFrame(opcode: opcode.rawValue, payload, fin: fin, key: key, lengthForm: lengthForm)
}

func wsBytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A close body: big-endian code + reason.
func wsCloseBody(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}

/// An event copied out of the callback (the pointers die with it).
enum WSRecordedEvent: Equatable, Sendable, CustomStringConvertible {
    case message(WebSocketOpcode, [UInt8])
    case ping([UInt8])
    case pong([UInt8])
    case close(UInt16?, [UInt8])

    init(_ event: WebSocketEvent) {
        switch event {
        case let .message(opcode, payload): self = .message(opcode, Array(payload))
        case let .ping(payload): self = .ping(Array(payload))
        case let .pong(payload): self = .pong(Array(payload))
        case let .close(code, reason): self = .close(code, Array(reason))
        }
    }

    var description: String {
        switch self {
        case let .message(opcode, payload): return "message(\(opcode), \(payload.count) bytes)"
        case let .ping(payload): return "ping(\(payload))"
        case let .pong(payload): return "pong(\(payload))"
        case let .close(code, reason): return "close(\(String(describing: code)), \(reason))"
        }
    }
}

struct WSDecodeOutcome: Equatable {
    var events: [WSRecordedEvent] = []
    var error: WebSocketProtocolError?
    /// Bytes the caller still holds after the last chunk.
    var leftover = 0
}

/// Feeds `chunks` the way a connection does: append each read to the bytes it
/// kept, call `consume`, drop what was consumed. Also checks the hint.
func wsDecode(_ chunks: [[UInt8]], maxMessageSize: Int = 1 << 20) -> WSDecodeOutcome {
    var assembler = WebSocketMessageAssembler(maxMessageSize: maxMessageSize)
    var outcome = WSDecodeOutcome()
    var pending: [UInt8] = []
    for chunk in chunks {
        pending += chunk
        var failure: WebSocketProtocolError?
        var events: [WSRecordedEvent] = []
        let consumed = pending.withUnsafeMutableBytes { buffer -> Int in
            do throws(WebSocketProtocolError) {
                return try assembler.consume(buffer) { events.append(WSRecordedEvent($0)) }
            } catch {
                failure = error
                return 0
            }
        }
        outcome.events += events
        if let failure {
            outcome.error = failure
            break
        }
        #expect(consumed >= 0 && consumed <= pending.count)
        pending.removeFirst(consumed)
        if let hint = assembler.bytesNeededHint {
            #expect(hint > pending.count, "hint \(hint) with \(pending.count) bytes kept")
        }
    }
    outcome.leftover = pending.count
    assembler.reset()
    return outcome
}

// MARK: - Encoder and RFC 6455 §5.7 examples

@Suite struct WebSocketEncoderTests {
    /// Encodes a whole server frame for comparison with the RFC bytes.
    func serverFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        let headerLength = WebSocketFrameEncoder.headerLength(payloadLength: payload.count)
        var frame = [UInt8](repeating: 0, count: headerLength)
        let written = frame.withUnsafeMutableBytes {
            WebSocketFrameEncoder.writeHeader(
                opcode: opcode, fin: fin, payloadLength: payload.count, to: $0.baseAddress!)
        }
        #expect(written == headerLength)
        return frame + payload
    }

    @Test func rfcSingleFrameUnmaskedText() {
        #expect(serverFrame(.text, wsBytes("Hello")) == [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    }

    @Test func rfcUnmaskedPing() {
        #expect(serverFrame(.ping, wsBytes("Hello")) == [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    }

    @Test func rfcFragmentedUnmaskedText() {
        #expect(serverFrame(.text, wsBytes("Hel"), fin: false) == [0x01, 0x03, 0x48, 0x65, 0x6C])
        #expect(serverFrame(.continuation, wsBytes("lo")) == [0x80, 0x02, 0x6C, 0x6F])
    }

    @Test(arguments: [
        (256, [0x82, 0x7E, 0x01, 0x00] as [UInt8]),
        (65536, [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00] as [UInt8]),
    ])
    func rfcLongBinaryHeaders(length: Int, header: [UInt8]) {
        let frame = serverFrame(.binary, [UInt8](repeating: 0xAB, count: length))
        #expect(Array(frame.prefix(header.count)) == header)
        #expect(frame.count == header.count + length)
    }

    @Test(arguments: [(0, 2), (1, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 40, 10)])
    func headerLength(payloadLength: Int, expected: Int) {
        #expect(WebSocketFrameEncoder.headerLength(payloadLength: payloadLength) == expected)
    }

    @Test func closePayloadStaticString() {
        #expect(WebSocketFrameEncoder.closePayload(code: .goingAway, reason: "bye") == [0x03, 0xE9] + wsBytes("bye"))
        #expect(WebSocketFrameEncoder.closePayload(code: .normal) == [0x03, 0xE8])
        #expect(WebSocketFrameEncoder.closePayload(code: .messageTooBig, reason: "message too big")
            == [0x03, 0xF1] + wsBytes("message too big"))
    }

    @Test(arguments: [
        // (reason, expected kept bytes)
        (String(repeating: "a", count: 123), 123),
        (String(repeating: "a", count: 200), 123),
        (String(repeating: "a", count: 122) + "é", 122),  // é is 2 bytes: would end at 124
        (String(repeating: "a", count: 121) + "é", 123),  // fits exactly
        (String(repeating: "a", count: 121) + "€", 121),  // € is 3 bytes
        (String(repeating: "a", count: 120) + "😀", 120),  // 4 bytes
        (String(repeating: "a", count: 119) + "😀", 123),
    ])
    func closePayloadTruncatesAtUTF8Boundary(reason: String, kept: Int) {
        let payload = WebSocketFrameEncoder.closePayload(code: .normal, reason: wsBytes(reason))
        #expect(payload.count == 2 + kept)
        #expect(Array(payload.dropFirst(2)) == Array(wsBytes(reason).prefix(kept)))
        var validator = UTF8Validator()
        let ok = payload.dropFirst(2).withUnsafeBytes { validator.validate($0) }
        #expect(ok && validator.isAtCodePointBoundary)
        #expect(payload.count <= 125)
    }

    /// Our own close frames must pass our own decoder's checks.
    @Test func encodedCloseDecodes() {
        let body = WebSocketFrameEncoder.closePayload(code: .protocolError, reason: "unmasked client frame")
        let outcome = wsDecode([webSocketClientFrame(.close, body)])
        #expect(outcome.events == [.close(1002, wsBytes("unmasked client frame"))])
    }
}

// MARK: - Decoder

/// One valid input and the events it must produce, however it is split.
struct WSValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var events: [WSRecordedEvent]
    var maxMessageSize = 1 << 20
    var testDescription: String { name }
}

/// One invalid input and the error it must produce, however it is split.
struct WSInvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var error: WebSocketProtocolError
    var maxMessageSize = 1 << 20
    var testDescription: String { name }
}

private let wsRFCMaskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
private let wsGrinning: [UInt8] = [0xF0, 0x9F, 0x98, 0x80]  // U+1F600, 4 bytes
private let wsMixedText = wsBytes(String(repeating: "hello, 세계! {\"k\":\"v\"} 😀 ", count: 10))

private let wsValidCases: [WSValidCase] = [
    WSValidCase(name: "RFC masked Hello", input: wsRFCMaskedHello, events: [.message(.text, wsBytes("Hello"))]),
    WSValidCase(
        name: "RFC fragmented Hel+lo, masked",
        input: webSocketClientFrame(.text, wsBytes("Hel"), fin: false) + webSocketClientFrame(.continuation, wsBytes("lo")),
        events: [.message(.text, wsBytes("Hello"))]),
    WSValidCase(name: "empty text", input: webSocketClientFrame(.text, []), events: [.message(.text, [])]),
    WSValidCase(name: "empty binary", input: webSocketClientFrame(.binary, []), events: [.message(.binary, [])]),
    WSValidCase(
        name: "binary 256 (16-bit length)",
        input: webSocketClientFrame(.binary, (0..<256).map { UInt8($0) }),
        events: [.message(.binary, (0..<256).map { UInt8($0) })]),
    WSValidCase(
        name: "non-minimal 16-bit length accepted",
        input: webSocketClientFrame(.text, wsBytes("hi"), lengthForm: .forced16),
        events: [.message(.text, wsBytes("hi"))]),
    WSValidCase(
        name: "non-minimal 64-bit length accepted",
        input: webSocketClientFrame(.binary, [1, 2, 3], lengthForm: .forced64),
        events: [.message(.binary, [1, 2, 3])]),
    WSValidCase(
        name: "zero masking key",
        input: webSocketClientFrame(.text, wsBytes("plain"), key: [0, 0, 0, 0]),
        events: [.message(.text, wsBytes("plain"))]),
    WSValidCase(
        name: "multibyte UTF-8 text",
        input: webSocketClientFrame(.text, wsMixedText, key: [1, 2, 3, 4]),
        events: [.message(.text, wsMixedText)]),
    WSValidCase(
        name: "ping between fragments delivered in order",
        input: webSocketClientFrame(.text, wsBytes("Hel"), fin: false) + webSocketClientFrame(.ping, wsBytes("x"))
            + webSocketClientFrame(.continuation, wsBytes("lo")) + webSocketClientFrame(.pong, wsBytes("y")),
        events: [.ping(wsBytes("x")), .message(.text, wsBytes("Hello")), .pong(wsBytes("y"))]),
    WSValidCase(
        name: "4-byte code point split across fragments",
        input: webSocketClientFrame(.text, [0x41] + wsGrinning.prefix(2), fin: false)
            + webSocketClientFrame(.continuation, Array(wsGrinning.suffix(2)) + [0x42]),
        events: [.message(.text, [0x41] + wsGrinning + [0x42])]),
    WSValidCase(
        name: "code point split over three fragments with an empty one",
        input: webSocketClientFrame(.text, [wsGrinning[0]], fin: false) + webSocketClientFrame(.continuation, [], fin: false)
            + webSocketClientFrame(.continuation, [wsGrinning[1], wsGrinning[2]], fin: false)
            + webSocketClientFrame(.continuation, [wsGrinning[3]]),
        events: [.message(.text, wsGrinning)]),
    WSValidCase(
        name: "fragmented binary with empty fragments",
        input: webSocketClientFrame(.binary, [], fin: false) + webSocketClientFrame(.continuation, [9], fin: false)
            + webSocketClientFrame(.continuation, []),
        events: [.message(.binary, [9])]),
    WSValidCase(
        name: "several messages in one read",
        input: webSocketClientFrame(.text, wsBytes("a")) + webSocketClientFrame(.binary, [0xFF, 0x00])
            + webSocketClientFrame(.ping, []) + webSocketClientFrame(.text, wsBytes("b"), key: [9, 8, 7, 6]),
        events: [.message(.text, wsBytes("a")), .message(.binary, [0xFF, 0x00]), .ping([]), .message(.text, wsBytes("b"))]),
    WSValidCase(
        name: "close with code and reason",
        input: webSocketClientFrame(.close, wsCloseBody(1000, wsBytes("bye"))),
        events: [.close(1000, wsBytes("bye"))]),
    WSValidCase(name: "close with empty body", input: webSocketClientFrame(.close, []), events: [.close(nil, [])]),
    WSValidCase(
        name: "close with 125-byte body",
        input: webSocketClientFrame(.close, wsCloseBody(4999, [UInt8](repeating: 0x61, count: 123))),
        events: [.close(4999, [UInt8](repeating: 0x61, count: 123))]),
    WSValidCase(
        name: "bytes after close are ignored",
        input: webSocketClientFrame(.close, wsCloseBody(1001)) + webSocketClientFrame(.text, wsBytes("late")) + [0xFF, 0xFF],
        events: [.close(1001, [])]),
    WSValidCase(
        name: "message of exactly maxMessageSize",
        input: webSocketClientFrame(.binary, [UInt8](repeating: 7, count: 60), fin: false)
            + webSocketClientFrame(.continuation, [UInt8](repeating: 8, count: 40)),
        events: [.message(.binary, [UInt8](repeating: 7, count: 60) + [UInt8](repeating: 8, count: 40))],
        maxMessageSize: 100),
    WSValidCase(
        name: "control frames ignore maxMessageSize",
        input: webSocketClientFrame(.ping, [UInt8](repeating: 1, count: 125)),
        events: [.ping([UInt8](repeating: 1, count: 125))],
        maxMessageSize: 10),
]

private func wsBadText(_ name: String, _ payload: [UInt8]) -> WSInvalidCase {
    WSInvalidCase(name: name, input: webSocketClientFrame(.text, payload), error: .invalidUTF8)
}

private func wsBadCloseCode(_ code: UInt16) -> WSInvalidCase {
    WSInvalidCase(name: "close code \(code)", input: webSocketClientFrame(.close, wsCloseBody(code)), error: .invalidCloseCode)
}

private let wsInvalidCases: [WSInvalidCase] = [
    WSInvalidCase(
        name: "unmasked text", input: webSocketRawClientFrame(opcode: 0x1, wsBytes("Hello"), masked: false),
        error: .unmaskedFrame),
    WSInvalidCase(
        name: "RFC unmasked ping", input: [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F], error: .unmaskedFrame),
    WSInvalidCase(name: "RSV1", input: webSocketRawClientFrame(opcode: 0x1, wsBytes("a"), rsv: 0x40), error: .reservedBitsSet),
    WSInvalidCase(name: "RSV2", input: webSocketRawClientFrame(opcode: 0x1, wsBytes("a"), rsv: 0x20), error: .reservedBitsSet),
    WSInvalidCase(name: "RSV3", input: webSocketRawClientFrame(opcode: 0x1, wsBytes("a"), rsv: 0x10), error: .reservedBitsSet),
    WSInvalidCase(
        name: "RSV1 on a continuation",
        input: webSocketClientFrame(.text, wsBytes("a"), fin: false) + webSocketRawClientFrame(opcode: 0x0, wsBytes("b"), rsv: 0x40),
        error: .reservedBitsSet),
] + ([0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] as [UInt8]).map {
    WSInvalidCase(name: "reserved opcode \($0)", input: webSocketRawClientFrame(opcode: $0, []), error: .unknownOpcode)
} + [
    WSInvalidCase(
        name: "ping with 126-byte payload", input: webSocketClientFrame(.ping, [UInt8](repeating: 0, count: 126)),
        error: .controlFrameTooLong),
    WSInvalidCase(
        name: "close with 126-byte payload", input: webSocketClientFrame(.close, wsCloseBody(1000, [UInt8](repeating: 0x61, count: 124))),
        error: .controlFrameTooLong),
    WSInvalidCase(
        name: "pong with 64-bit length form", input: webSocketClientFrame(.pong, [1], lengthForm: .forced64),
        error: .controlFrameTooLong),
    WSInvalidCase(name: "fragmented ping", input: webSocketClientFrame(.ping, [1], fin: false), error: .fragmentedControlFrame),
    WSInvalidCase(
        name: "fragmented close", input: webSocketClientFrame(.close, wsCloseBody(1000), fin: false),
        error: .fragmentedControlFrame),
    WSInvalidCase(
        name: "continuation without start", input: webSocketClientFrame(.continuation, wsBytes("lo")),
        error: .unexpectedContinuation),
    WSInvalidCase(
        name: "continuation after a completed message",
        input: webSocketClientFrame(.text, wsBytes("a")) + webSocketClientFrame(.continuation, wsBytes("b")),
        error: .unexpectedContinuation),
    WSInvalidCase(
        name: "new text mid-message",
        input: webSocketClientFrame(.text, wsBytes("Hel"), fin: false) + webSocketClientFrame(.text, wsBytes("lo")),
        error: .expectedContinuation),
    WSInvalidCase(
        name: "new binary mid-message",
        input: webSocketClientFrame(.binary, [1], fin: false) + webSocketClientFrame(.binary, [2], fin: false),
        error: .expectedContinuation),
    WSInvalidCase(name: "close with 1-byte body", input: webSocketClientFrame(.close, [0x03]), error: .invalidCloseBody),
] + ([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] as [UInt16]).map(wsBadCloseCode) + [
    WSInvalidCase(
        name: "close reason invalid UTF-8", input: webSocketClientFrame(.close, wsCloseBody(1000, [0x61, 0xFF])),
        error: .invalidCloseReason),
    WSInvalidCase(
        name: "close reason truncated code point", input: webSocketClientFrame(.close, wsCloseBody(1000, [0xE2, 0x82])),
        error: .invalidCloseReason),
    wsBadText("overlong C0 80", [0xC0, 0x80]),
    wsBadText("overlong C1 BF", [0xC1, 0xBF]),
    wsBadText("overlong E0 80 80", [0xE0, 0x80, 0x80]),
    wsBadText("overlong F0 8F BF BF", [0xF0, 0x8F, 0xBF, 0xBF]),
    wsBadText("surrogate ED A0 80", [0xED, 0xA0, 0x80]),
    wsBadText("surrogate ED BF BF", [0xED, 0xBF, 0xBF]),
    wsBadText("above U+10FFFF F4 90 80 80", [0xF4, 0x90, 0x80, 0x80]),
    wsBadText("F5 lead byte", [0xF5, 0x80, 0x80, 0x80]),
    wsBadText("FF byte", [0x41, 0xFF]),
    wsBadText("stray continuation", [0x41, 0x80]),
    wsBadText("truncated sequence at end of message", [0x41, 0xE2, 0x82]),
    wsBadText("invalid byte after 20 ASCII bytes", [UInt8](repeating: 0x41, count: 20) + [0xFE]),
    WSInvalidCase(
        name: "invalid UTF-8 split across fragments (E2 82 | 41)",
        input: webSocketClientFrame(.text, [0x61, 0xE2, 0x82], fin: false) + webSocketClientFrame(.continuation, [0x41]),
        error: .invalidUTF8),
    WSInvalidCase(
        name: "invalid UTF-8 in first fragment",
        input: webSocketClientFrame(.text, [0xC0, 0x80], fin: false) + webSocketClientFrame(.continuation, [0x41]),
        error: .invalidUTF8),
    WSInvalidCase(
        name: "fragmented text ending mid-code-point",
        input: webSocketClientFrame(.text, [wsGrinning[0], wsGrinning[1]], fin: false) + webSocketClientFrame(.continuation, [wsGrinning[2]]),
        error: .invalidUTF8),
    WSInvalidCase(
        name: "oversized single frame", input: webSocketClientFrame(.binary, [UInt8](repeating: 0, count: 101)),
        error: .messageTooBig, maxMessageSize: 100),
    WSInvalidCase(
        name: "oversized sum of fragments",
        input: webSocketClientFrame(.text, [UInt8](repeating: 0x61, count: 60), fin: false)
            + webSocketClientFrame(.continuation, [UInt8](repeating: 0x61, count: 41)),
        error: .messageTooBig, maxMessageSize: 100),
    WSInvalidCase(
        name: "64-bit length with MSB set",
        input: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        error: .invalidLength),
]

@Suite struct WebSocketDecoderTests {
    @Test(arguments: wsValidCases)
    func validWhole(_ c: WSValidCase) {
        let outcome = wsDecode([c.input], maxMessageSize: c.maxMessageSize)
        #expect(outcome == WSDecodeOutcome(events: c.events, error: nil, leftover: 0))
    }

    /// Every split point: the first k bytes, then the rest appended to what
    /// the caller kept.
    @Test(arguments: wsValidCases)
    func validSplitAtEveryByte(_ c: WSValidCase) {
        for k in 0...c.input.count {
            let outcome = wsDecode(
                [Array(c.input[..<k]), Array(c.input[k...])], maxMessageSize: c.maxMessageSize)
            #expect(outcome == WSDecodeOutcome(events: c.events, error: nil, leftover: 0), "split at \(k)")
        }
    }

    @Test(arguments: wsValidCases)
    func validByteByByte(_ c: WSValidCase) {
        let outcome = wsDecode(c.input.map { [$0] }, maxMessageSize: c.maxMessageSize)
        #expect(outcome == WSDecodeOutcome(events: c.events, error: nil, leftover: 0))
    }

    @Test(arguments: wsInvalidCases)
    func invalidWhole(_ c: WSInvalidCase) {
        let outcome = wsDecode([c.input], maxMessageSize: c.maxMessageSize)
        #expect(outcome.error == c.error)
    }

    @Test(arguments: wsInvalidCases)
    func invalidSplitAtEveryByte(_ c: WSInvalidCase) {
        let whole = wsDecode([c.input], maxMessageSize: c.maxMessageSize)
        for k in 0...c.input.count {
            let outcome = wsDecode(
                [Array(c.input[..<k]), Array(c.input[k...])], maxMessageSize: c.maxMessageSize)
            #expect(outcome.error == c.error, "split at \(k)")
            #expect(outcome.events == whole.events, "split at \(k)")
        }
    }

    @Test(arguments: [125, 126, 256, 65535, 65536, 200_000])
    func largeBinaryMessages(length: Int) {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let frame = webSocketClientFrame(.binary, payload, key: [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(frame.count == WebSocketFrameEncoder.headerLength(payloadLength: length) + 4 + length)
        #expect(wsDecode([frame]).events == [.message(.binary, payload)])
        // Two reads, split inside the payload: the hint announces the whole frame.
        var assembler = WebSocketMessageAssembler(maxMessageSize: 1 << 20)
        var first = Array(frame.prefix(frame.count / 2))
        let consumed = first.withUnsafeMutableBytes { buffer in
            (try? assembler.consume(buffer) { _ in Issue.record("no event expected") }) ?? -1
        }
        #expect(consumed == 0)
        #expect(assembler.bytesNeededHint == frame.count)
        #expect(Array(first) == Array(frame.prefix(frame.count / 2)), "partial frame must not be modified")
        assembler.reset()
    }

    @Test func rfcMaskedHelloMatchesHelper() {
        #expect(webSocketClientFrame(.text, wsBytes("Hello")) == wsRFCMaskedHello)
    }

    @Test func unmasksInPlaceAndDeliversZeroCopy() {
        var input = wsRFCMaskedHello
        var assembler = WebSocketMessageAssembler(maxMessageSize: 1024)
        input.withUnsafeMutableBytes { buffer in
            let consumed = try? assembler.consume(buffer) { event in
                guard case let .message(.text, payload) = event else {
                    Issue.record("unexpected \(event)")
                    return
                }
                #expect(payload.baseAddress == UnsafeRawPointer(buffer.baseAddress! + 6))
                #expect(payload.count == 5)
            }
            #expect(consumed == buffer.count)
        }
        #expect(Array(input.suffix(5)) == wsBytes("Hello"))
    }

    /// A huge frame is refused from its header alone: nothing of the payload
    /// needs to be buffered first.
    @Test(arguments: [WebSocketTestLengthForm.forced16, .forced64])
    func oversizeDetectedFromHeaderAlone(form: WebSocketTestLengthForm) {
        let header: [UInt8] = form == .forced16 ? [0x82, 0xFE, 0x10, 0x00] : [0x82, 0xFF, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF]
        let outcome = wsDecode([header], maxMessageSize: 1000)
        #expect(outcome.error == WebSocketProtocolError.messageTooBig)
        #expect(outcome.error?.closeCode == .messageTooBig)
    }

    @Test func hintIsNilUntilTheLengthIsKnown() {
        var assembler = WebSocketMessageAssembler(maxMessageSize: 1 << 20)
        let frame = webSocketClientFrame(.binary, [UInt8](repeating: 1, count: 300))
        for k in 0..<frame.count {
            var part = Array(frame.prefix(k))
            let consumed = part.withUnsafeMutableBytes { (try? assembler.consume($0) { _ in }) ?? -1 }
            #expect(consumed == 0)
            #expect(assembler.bytesNeededHint == (k >= 4 ? frame.count : nil), "after \(k) bytes")
        }
    }

    @Test(arguments: [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999] as [UInt16])
    func validCloseCodes(code: UInt16) {
        #expect(wsDecode([webSocketClientFrame(.close, wsCloseBody(code, wsBytes("r")))]).events == [.close(code, wsBytes("r"))])
    }

    @Test func errorsCarryTheRightCloseCodes() {
        #expect(WebSocketProtocolError.unmaskedFrame.closeCode.rawValue == 1002)
        #expect(WebSocketProtocolError.invalidUTF8.closeCode.rawValue == 1007)
        #expect(WebSocketProtocolError.invalidCloseReason.closeCode.rawValue == 1007)
        #expect(WebSocketProtocolError.messageTooBig.closeCode.rawValue == 1009)
        #expect(WebSocketProtocolError.invalidLength.closeCode == .protocolError)
        #expect(WebSocketProtocolError.unmaskedFrame.reason == "unmasked client frame")
    }

    @Test func fragmentBufferReleasedAndStateReset() {
        // A fragmented message, then an unfragmented one with the same assembler.
        var assembler = WebSocketMessageAssembler(maxMessageSize: 1 << 20)
        var events: [WSRecordedEvent] = []
        var input = webSocketClientFrame(.text, wsBytes("ab"), fin: false) + webSocketClientFrame(.continuation, wsBytes("c"))
            + webSocketClientFrame(.text, wsBytes("d"))
        let consumed = input.withUnsafeMutableBytes { buffer in
            (try? assembler.consume(buffer) { events.append(WSRecordedEvent($0)) }) ?? -1
        }
        #expect(consumed == input.count)
        #expect(events == [.message(.text, wsBytes("abc")), .message(.text, wsBytes("d"))])
        // reset() mid-message: a continuation is then unexpected.
        var start = webSocketClientFrame(.binary, [1], fin: false)
        _ = start.withUnsafeMutableBytes { buffer in try? assembler.consume(buffer) { _ in } }
        assembler.reset()
        var cont = webSocketClientFrame(.continuation, [2])
        var failure: WebSocketProtocolError?
        cont.withUnsafeMutableBytes { buffer in
            do throws(WebSocketProtocolError) {
                _ = try assembler.consume(buffer) { _ in }
            } catch {
                failure = error
            }
        }
        #expect(failure == .unexpectedContinuation)
    }
}
