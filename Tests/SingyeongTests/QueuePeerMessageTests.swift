import Testing
@testable import Singyeong

/// The queue frames between nodes: every operation and message survives a
/// round trip through its MessagePack body, and bodies that are not one are
/// refused (nil) rather than half-read; rendezvous ownership is stable and
/// spreads queues.
@Suite struct QueuePeerMessageTests {
    private func decode(_ bytes: [UInt8]) -> DocumentTape {
        var tape = DocumentTape()
        _ = try? MessagePackTapeDecoder.decode(copying: bytes, into: &tape)
        return tape
    }

    private func operation(_ bytes: [UInt8]) -> QueuePeerMessage.Operation? {
        let tape = decode(bytes)
        return bytes.withUnsafeBytes { QueuePeerMessage.operation(tape: tape, body: $0) }
    }

    @Test func enqueueRoundTripsInBothEncodings() {
        for (encoding, t, p, n) in [
            (PayloadEncoding.json, Array("{\"application\":\"a\"}".utf8), Array("[1,{\"x\":2}]".utf8), Array("\"n1\"".utf8) as [UInt8]?),
            (.msgpack, [0x80], [0x91, 0x01], nil),
            (.msgpack, [0x81, 0xA1, 0x61, 0x01], [0xC0], [0xA1, 0x6E]),
        ] as [(PayloadEncoding, [UInt8], [UInt8], [UInt8]?)] {
            let bytes = t.withUnsafeBytes { tb in p.withUnsafeBytes { pb in n.withOptionalBytes { nb in
                QueuePeerMessage.encode(.enqueue(queue: "jobs", encoding: encoding, target: tb, nonce: nb, payload: pb))
            } } }
            let tape = decode(bytes)
            let ok: Bool = bytes.withUnsafeBytes { body in
                guard case let .enqueue(queue, enc, target, nonce, payload)? = QueuePeerMessage.operation(tape: tape, body: body)
                else { return false }
                return queue == "jobs" && enc == encoding && Array(target) == t && Array(payload) == p
                    && nonce.map(Array.init) == n
            }
            #expect(ok, "\(encoding)")
        }
    }

    @Test func requestCarriesIdsAndMetadata() {
        var metadata = ClientMetadata(entries: [("region", .string, .string("eu")), ("n", .integer, .int(7))])
        metadata.setReserved(.restricted, .bool(false))
        let consumer = QueuePeerMessage.Consumer(handle: 42, sequence: 9, application: "app", client: "c1",
                                                 encoding: .msgpack, metadata: metadata)
        guard case let .request(queue, c)? = operation(QueuePeerMessage.encode(.request(queue: "q", consumer: consumer))) else {
            Issue.record("not decoded")
            return
        }
        #expect(queue == "q" && c.handle == 42 && c.sequence == 9 && c.application == "app" && c.client == "c1")
        #expect(c.encoding == .msgpack && c.metadata == metadata)
    }

    /// A repeat to an owner that keeps the metadata leaves `m` out; that
    /// decodes as "unchanged" (nil), not as empty metadata.
    @Test func requestWithoutMetadataIsARepeat() {
        let consumer = QueuePeerMessage.Consumer(handle: 42, sequence: 9, application: "app", client: "c1",
                                                 encoding: .json, metadata: nil)
        let bytes = QueuePeerMessage.encode(.request(queue: "q", consumer: consumer))
        let full = QueuePeerMessage.encode(.request(queue: "q", consumer: .init(
            handle: 42, sequence: 9, application: "app", client: "c1", encoding: .json, metadata: ClientMetadata(entries: []))))
        #expect(bytes.count < full.count)
        guard case let .request(queue, c)? = operation(bytes) else {
            Issue.record("not decoded")
            return
        }
        #expect(queue == "q" && c.handle == 42 && c.sequence == 9 && c.application == "app" && c.client == "c1")
        #expect(c.metadata == nil)
        guard case let .request(_, withEmpty)? = operation(full) else {
            Issue.record("not decoded")
            return
        }
        #expect(withEmpty.metadata == ClientMetadata(entries: []))
    }

    @Test func cancelAckMessagesAndReplies() {
        guard case .cancel("q", 7)? = operation(QueuePeerMessage.encode(.cancel(queue: "q", handle: 7))) else {
            Issue.record("cancel")
            return
        }
        guard case .acknowledge("q", "id-1")? = operation(QueuePeerMessage.encode(.acknowledge(queue: "q", id: "id-1"))) else {
            Issue.record("ack")
            return
        }
        let payload = Array("{\"a\":1}".utf8)
        let bytes = payload.withUnsafeBytes {
            QueuePeerMessage.encode(.deliver(queue: "q", handle: 3, sequence: 4, id: "m", encoding: .json, nonce: nil, payload: $0))
        }
        let tape = decode(bytes)
        let delivered: Bool = bytes.withUnsafeBytes { body in
            guard case let .deliver(q, h, s, id, enc, nonce, p)? = QueuePeerMessage.message(tape: tape, body: body) else { return false }
            return q == "q" && h == 3 && s == 4 && id == "m" && enc == .json && nonce == nil && Array(p) == payload
        }
        #expect(delivered)
        let gone = QueuePeerMessage.encode(.gone(handle: 5))
        let goneTape = decode(gone)
        #expect(gone.withUnsafeBytes { if case .gone(5)? = QueuePeerMessage.message(tape: goneTape, body: $0) { true } else { false } })
        for reply in [QueuePeerMessage.Reply(), .init(error: "no"), .init(holder: "n2"), .init(error: "e", holder: "h"),
                      .init(keepsMetadata: true), .init(needsMetadata: true)] {
            #expect(QueuePeerMessage.reply(tape: decode(QueuePeerMessage.encode(reply))) == reply)
        }
        #expect(QueuePeerMessage.reply(tape: decode([0x01])).error != nil)  // not a map
        // A flag that is not `true` is not set (a node never sends one).
        let notBool: [UInt8] = [0x81, 0xA2, 0x6B, 0x6D, 0x01]  // {"km": 1}
        #expect(QueuePeerMessage.reply(tape: decode(notBool)) == QueuePeerMessage.Reply())
    }

    /// Bodies written by hand (MessagePack maps) that must be refused.
    @Test(arguments: [
        ([0x90], "not a map"),
        ([0x81, 0xA1, 0x6F, 0xA1, 0x71], "enqueue without a name"),
        ([0x82, 0xA1, 0x6F, 0xA1, 0x7A, 0xA1, 0x71, 0xA1, 0x78], "unknown op"),
        ([0x82, 0xA1, 0x6F, 0xA1, 0x63, 0xA1, 0x71, 0xA0], "empty name"),
        ([0x82, 0xA1, 0x6F, 0xA1, 0x63, 0xA1, 0x71, 0xA1, 0x78], "cancel without a handle"),
        ([0x83, 0xA1, 0x6F, 0xA1, 0x63, 0xA1, 0x71, 0xA1, 0x78, 0xA1, 0x68, 0xA1, 0x31], "handle not an integer"),
        ([0x82, 0xA1, 0x6F, 0xA1, 0x61, 0xA1, 0x71, 0xA1, 0x78], "ack without an id"),
        ([0x85, 0xA1, 0x6F, 0xA1, 0x71, 0xA1, 0x71, 0xA1, 0x78, 0xA3, 0x65, 0x6E, 0x63, 0x00,
          0xA6, 0x74, 0x61, 0x72, 0x67, 0x65, 0x74, 0x01, 0xA7, 0x70, 0x61, 0x79, 0x6C, 0x6F, 0x61, 0x64, 0xA1, 0x31],
         "JSON target that is not a string"),
    ] as [([UInt8], String)])
    func badOperationsAreRefused(_ bytes: [UInt8], _ why: String) {
        #expect(operation(bytes) == nil ? true : false, "\(why)")
    }

    @Test func badRequestMetadataIsRefused() {
        let good = QueuePeerMessage.encode(.request(queue: "q", consumer: .init(
            handle: 1, sequence: 1, application: "a", client: "c", encoding: .json,
            metadata: ClientMetadata(entries: [("k", .string, .string("v"))]))))
        #expect(operation(good) != nil ? true : false)
        // The type name "string" (0xA6 + 6 bytes) changed to "strinx": unknown.
        var bad = good
        let type = Array("string".utf8)
        if let at = (0...(bad.count - type.count)).first(where: { Array(bad[$0..<$0 + type.count]) == type }) {
            bad[at + 5] = UInt8(ascii: "x")
        }
        #expect(bad != good)
        #expect(operation(bad) == nil ? true : false)
    }

    @Test func rendezvousIsStableAndSpreads() {
        let nodes = (0..<4).map { "node-\($0)" }
        var counts: [String: Int] = [:]
        for i in 0..<4000 {
            let name = "queue-\(i)"
            let owner = QueueOwnership.preferredOwner(of: name, among: Array(nodes.dropFirst()), local: nodes[0])
            // The same answer whichever node computes it.
            #expect(QueueOwnership.preferredOwner(of: name, among: Array(nodes.dropLast()), local: nodes[3]) == owner)
            counts[owner, default: 0] += 1
            // A node leaving moves only the queues it owned.
            let without = QueueOwnership.preferredOwner(of: name, among: ["node-1", "node-2"], local: "node-0")
            if owner != "node-3" { #expect(without == owner) }
        }
        #expect(counts.values.allSatisfy { (850...1150).contains($0) }, "\(counts)")
    }
}
