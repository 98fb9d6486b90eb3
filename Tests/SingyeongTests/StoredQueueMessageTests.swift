import Testing
@testable import Singyeong

/// The stored form of a queued message and the reading of the Redis store's
/// acquire reply: round trips, and bad bytes refused rather than trusted.
@Suite struct StoredQueueMessageTests {
    @Test(arguments: [
        StoredQueueMessage(encoding: .json, nonce: Array("\"n\"".utf8), target: Array("{\"application\":\"a\"}".utf8), payload: Array("[1,2]".utf8)),
        StoredQueueMessage(encoding: .json, nonce: nil, target: Array("{}".utf8), payload: Array("1".utf8)),
        StoredQueueMessage(encoding: .msgpack, nonce: [0xC0], target: [0x80], payload: [0xC4, 0x02, 0x00, 0xFF]),
        StoredQueueMessage(encoding: .msgpack, nonce: [], target: [0x81, 0xA1, 0x61, 0x01], payload: [UInt8](repeating: 7, count: 70_000)),
    ])
    func roundTrips(_ message: StoredQueueMessage) {
        let bytes = message.encoded
        #expect(StoredQueueMessage(decoding: bytes) == message)
        #expect(StoredQueueMessage(decoding: bytes)?.encoded == bytes)
    }

    @Test(arguments: [
        ([], "empty"),
        ([1, 0], "too short"),
        ([2, 0, 0, 0, 0, 0, 1, 0x7B, 0x31], "unknown version"),
        ([1, 2, 0, 0, 0, 0, 1, 0x7B, 0x31], "unknown encoding"),
        ([1, 0, 2, 0, 0, 0, 1, 0x7B, 0x31], "bad nonce flag"),
        ([1, 0, 0, 0, 0, 0, 9, 0x7B, 0x31], "target past the end"),
        ([1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7B], "huge target length"),
        ([1, 0, 0, 0, 0, 0, 0, 0x31], "empty target"),
        ([1, 0, 0, 0, 0, 0, 1, 0x7B], "no payload"),
        ([1, 0, 1, 0, 0, 0, 5, 0x31], "nonce past the end"),
        ([1, 0, 1, 0, 0], "nonce length cut"),
    ] as [([UInt8], String)])
    func badBytesAreRefused(_ bytes: [UInt8], _ why: String) {
        #expect(StoredQueueMessage(decoding: bytes) == nil, "\(why)")
    }

    private func stored(_ payload: String) -> RedisValue {
        .string(StoredQueueMessage(encoding: .json, nonce: nil, target: Array("{}".utf8), payload: Array(payload.utf8)).encoded)
    }

    @Test func acquireReplyIsReadIntoPlaces() {
        let reply = RedisValue.array([
            .integer(1), .integer(10_000),
            .array([.string(Array("q2".utf8)), .string(Array("q1".utf8))]),
            .array([.string(Array("u".utf8)), .string(Array("9000".utf8))]),
            .array([.string(Array("d".utf8)), .string(Array("9500".utf8))]),
            .array([.string(Array("q1".utf8)), stored("1"), .string(Array("q2".utf8)), stored("2"),
                    .string(Array("u".utf8)), stored("3"), .string(Array("d".utf8)), stored("4"),
                    .string(Array("orphan".utf8)), stored("5"), .string(Array("bad".utf8)), .string([9, 9])]),
            .array([.string(Array("u".utf8)), .string(Array("2".utf8))]),
        ])
        guard case .success(let s) = RedisQueueStore.snapshot(from: reply) else {
            Issue.record("not read")
            return
        }
        // Queue order as listed; a message no place lists is queued last (not
        // lost); an unreadable one is left out (it stays in Redis).
        #expect(s.queued.map(\.id) == ["q2", "q1", "orphan"])
        #expect(s.unacked.map(\.id) == ["u"] && s.unacked[0].age == 1000 && s.unacked[0].deliveries == 2)
        #expect(s.dead.map(\.id) == ["d"] && s.dead[0].age == 500)
        #expect(s.queued[0].message.payload == Array("2".utf8))
    }

    @Test(arguments: [
        (RedisValue.array([.integer(0), .string(Array("other".utf8))]), "owned:other"),
        (RedisValue.error("NOSCRIPT"), "failure"),
        (RedisValue.array([.integer(1), .integer(5)]), "failure"),
        (RedisValue.status("OK"), "failure"),
        (RedisValue.null, "failure"),
    ])
    func otherAcquireRepliesAreNotSnapshots(_ reply: RedisValue, _ expected: String) {
        switch RedisQueueStore.snapshot(from: reply) {
        case .success: Issue.record("read as a snapshot")
        case .ownedElsewhere(let owner): #expect(expected == "owned:\(owner)")
        case .failure: #expect(expected == "failure")
        }
    }
}
