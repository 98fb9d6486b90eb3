import Testing
@testable import Singyeong

/// The encoders the server uses for its own frames: JSON integers, MessagePack
/// values, and HELLO in both encodings.
@Suite struct GatewayFramesTests {
    @Test(arguments: [
        (Int64(0), "0"), (7, "7"), (45000, "45000"), (-1, "-1"),
        (Int64.max, "9223372036854775807"), (Int64.min, "-9223372036854775808"),
    ])
    func jsonIntegers(value: Int64, text: String) {
        var out: [UInt8] = []
        JSONWriter.appendInteger(value, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == text)
    }

    @Test(arguments: [
        (Int64(0), [0x00]), (127, [0x7F]), (128, [0xCC, 0x80]), (256, [0xCD, 0x01, 0x00]),
        (65536, [0xCE, 0x00, 0x01, 0x00, 0x00]), (1 << 32, [0xCF, 0, 0, 0, 1, 0, 0, 0, 0]),
        (-1, [0xFF]), (-32, [0xE0]), (-33, [0xD0, 0xDF]), (-129, [0xD1, 0xFF, 0x7F]),
        (-32769, [0xD2, 0xFF, 0xFF, 0x7F, 0xFF]),
    ] as [(Int64, [UInt8])])
    func messagePackIntegers(value: Int64, bytes: [UInt8]) {
        var out: [UInt8] = []
        MessagePackWriter.appendInteger(value, to: &out)
        #expect(out == bytes)
    }

    @Test func helloJSON() {
        let frame = GatewayFrames(heartbeatInterval: 45000).hello(encoding: .json, timestamp: 1_690_000_000_000)
        let expected = #"{"op":0,"d":{"heartbeat_interval":45000},"t":null,"ts":1690000000000}"#
        frame.withBytes { bytes in
            #expect(bytes[0] == 0x81)  // FIN + text
            #expect(Int(bytes[1]) == expected.utf8.count)  // unmasked, 7-bit length
            #expect(String(decoding: bytes[2...], as: UTF8.self) == expected)
        }
    }

    @Test func helloMessagePack() {
        let frame = GatewayFrames(heartbeatInterval: 45000).hello(encoding: .msgpack, timestamp: 1_690_000_000_000)
        var expected: [UInt8] = [0x84, 0xA2, 0x6F, 0x70, 0x00, 0xA1, 0x64, 0x81, 0xB2]
        expected += Array("heartbeat_interval".utf8)
        expected += [0xCD, 0xAF, 0xC8]  // 45000
        expected += [0xA1, 0x74, 0xC0, 0xA2, 0x74, 0x73, 0xCF]
        expected += withUnsafeBytes(of: UInt64(1_690_000_000_000).bigEndian) { Array($0) }
        frame.withBytes { bytes in
            #expect(bytes[0] == 0x82)  // FIN + binary
            #expect(Array(bytes[2...]) == expected)
        }
    }
}
