import Testing
@testable import Singyeong

/// Frames the server builds itself: HELLO in both encodings, and the routed
/// dispatch frame (exact bytes, one allocation, payload copied verbatim).
@Suite struct GatewayFramesTests {
    @Test func helloJSON() {
        let frame = GatewayFrames(heartbeatInterval: 45000).hello(encoding: .json, timestamp: 1_690_000_000_000)
        let expected = #"{"op":0,"t":null,"ts":1690000000000,"d":{"heartbeat_interval":45000}}"#
        frame.withBytes { bytes in
            #expect(bytes[0] == 0x81)  // FIN + text
            #expect(Int(bytes[1]) == expected.utf8.count)  // unmasked, 7-bit length
            #expect(String(decoding: bytes[2...], as: UTF8.self) == expected)
        }
    }

    @Test func helloMessagePack() {
        let frame = GatewayFrames(heartbeatInterval: 45000).hello(encoding: .msgpack, timestamp: 1_690_000_000_000)
        var expected: [UInt8] = [0x84, 0xA2, 0x6F, 0x70, 0x00, 0xA1, 0x74, 0xC0, 0xA2, 0x74, 0x73]
        expected += [0xCF] + withUnsafeBytes(of: UInt64(1_690_000_000_000).bigEndian) { Array($0) }
        expected += [0xA1, 0x64, 0x81, 0xB2] + Array("heartbeat_interval".utf8) + [0xCD, 0xAF, 0xC8]  // 45000
        frame.withBytes { bytes in
            #expect(bytes[0] == 0x82)  // FIN + binary
            #expect(Array(bytes[2...]) == expected)
        }
    }

    /// Decodes `text` as a client frame and builds the SEND delivery for `encoding`.
    private func delivery(of text: String, for encoding: PayloadEncoding) -> [UInt8] {
        var tape = DocumentTape()
        var bytes = Array(text.utf8) + [UInt8](repeating: 0, count: 64)
        return bytes.withUnsafeMutableBytes { raw -> [UInt8] in
            let input = UnsafeRawBufferPointer(rebasing: raw[0..<text.utf8.count])
            try! JSONTapeDecoder.decode(input, into: &tape)
            let d = tape.member(of: tape.root, named: "d")!
            let message = RoutedMessage(event: "SEND", encoding: .json,
                                        nonce: tape.member(of: d, named: "nonce").map { UnsafeRawBufferPointer(rebasing: input[tape.span($0)]) },
                                        payload: UnsafeRawBufferPointer(rebasing: input[tape.span(tape.member(of: d, named: "payload")!)]))
            var scratch: [UInt8] = []
            let frame = DispatchFrame.make(message, for: encoding, ts: 1_690_000_000_456, scratch: &scratch, pool: FramePool())!
            return frame.withBytes { Array($0) }
        }
    }

    @Test func sendDeliveryKeepsThePayloadBytes() {
        let frame = delivery(of: #"{"op":4,"t":"SEND","d":{"target":{},"nonce":"n-1","payload":{"a" :  [1,2 ,3], "f": 1.0}}}"#, for: .json)
        let expected = #"{"op":4,"t":"SEND","d":{"target":null,"nonce":"n-1","payload":{"a" :  [1,2 ,3], "f": 1.0}},"ts":1690000000456}"#
        #expect(frame[0] == 0x81)
        #expect(String(decoding: frame[2...], as: UTF8.self) == expected)
    }

    @Test func sendDeliveryWithoutNonceSaysNull() {
        let frame = delivery(of: #"{"op":4,"t":"SEND","d":{"target":{},"payload":null}}"#, for: .json)
        #expect(String(decoding: frame[2...], as: UTF8.self) == #"{"op":4,"t":"SEND","d":{"target":null,"nonce":null,"payload":null},"ts":1690000000456}"#)
    }

    @Test func sendDeliveryTranscodesToMessagePack() throws {
        let frame = delivery(of: #"{"op":4,"t":"SEND","d":{"target":{},"nonce":7,"payload":{"x":1.5,"n":-2}}}"#, for: .msgpack)
        #expect(frame[0] == 0x82)
        var tape = DocumentTape()
        try MessagePackTapeDecoder.decode(copying: frame[2...], into: &tape)
        let value = tape.value(tape.root)
        let expected = Value.object(ValueObject([
            ("op", .int(4)), ("t", .string("SEND")), ("ts", .int(1_690_000_000_456)),
            ("d", .object(ValueObject([("target", .null), ("nonce", .int(7)),
                                        ("payload", .object(ValueObject([("x", .double(1.5)), ("n", .int(-2))])))]))),
        ]))
        #expect(value == expected)
    }
}
