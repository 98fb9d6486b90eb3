import Testing
@testable import Singyeong

/// The peer-link framing: round trips, splits at every byte, batches, and
/// malformed input (short lengths, oversized bodies, truncated batches).
@Suite struct PeerFrameTests {
    private func bytes(_ frame: OutboundBytes) -> [UInt8] { frame.withBytes { Array($0) } }

    @Test func roundTripAndEverySplit() throws {
        let frame = bytes(PeerFrameCodec.make(.deliver, requestID: 0x0102_0304_0506_0708, body: [9, 8, 7]))
        #expect(frame == [0, 0, 0, 12, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7])
        for cut in 0..<frame.count {
            let header = try frame[0..<cut].withUnsafeBytes { try PeerFrameCodec.next($0, maxBody: 100) }
            #expect(header == nil, "incomplete at \(cut) bytes")
        }
        let header = try frame.withUnsafeBytes { try PeerFrameCodec.next($0, maxBody: 100) }
        #expect(header == PeerFrameHeader(type: 12, requestID: 0x0102_0304_0506_0708, body: 13..<16, frameLength: 16))
    }

    @Test(arguments: [
        ([0, 0, 0, 8] + [UInt8](repeating: 0, count: 8), "shorter than its header"),
        ([0, 0, 1, 0] + [UInt8](repeating: 0, count: 9), "over the"),
        ([0xFF, 0xFF, 0xFF, 0xFF], "over the"),
    ] as [([UInt8], String)])
    func malformedFramesAreRefused(input: [UInt8], reason: String) {
        do {
            _ = try input.withUnsafeBytes { try PeerFrameCodec.next($0, maxBody: 100) }
            Issue.record("accepted \(input)")
        } catch let error as PeerFrameError {
            #expect(error.reason.contains(reason), "\(error.reason)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func batchEntries() {
        var body: [UInt8] = []
        PeerFrameCodec.appendBatchEntry(requestID: 7, body: [1, 2, 3], to: &body)
        PeerFrameCodec.appendBatchEntry(requestID: 8, body: [], to: &body)
        let entries = body.withUnsafeBytes { PeerFrameCodec.batchEntries($0) }
        #expect(entries?.map(\.requestID) == [7, 8])
        #expect(entries?.map(\.body) == [12..<15, 27..<27])
        // Truncated anywhere inside an entry: refused, never over-read.
        for cut in 1..<body.count where cut != 15 {
            #expect(body[0..<cut].withUnsafeBytes { PeerFrameCodec.batchEntries($0) } == nil, "cut \(cut)")
        }
    }

    @Test func proofsBindNonceIdentityAndRole() {
        func proof(cookie: String = "c", role: PeerAuthentication.Role = .dialer, sender: String = "id", senderNonce: String = "s",
                   receiver: String = "r", receiverNonce: String = "n1", binding: String = "") -> String {
            PeerAuthentication.proof(cookie: cookie, role: role, senderID: sender, senderNonce: senderNonce, receiverID: receiver,
                                     receiverNonce: receiverNonce, channelBinding: binding)
        }
        let a = proof()
        #expect(a.count == 64)
        #expect(PeerAuthentication.equal(a, proof()))
        for other in [proof(cookie: "x"), proof(role: .acceptor), proof(sender: "other"), proof(senderNonce: "t"), proof(receiver: "q"),
                      proof(receiverNonce: "n2"), proof(binding: "b"),
                      // Fields are length-prefixed: moving a byte across a boundary changes the proof.
                      proof(sender: "id|", senderNonce: "|s"), proof(sender: "i", senderNonce: "ds")] {
            #expect(!PeerAuthentication.equal(a, other))
        }
        #expect(PeerAuthentication.makeNodeID().count == 32)
        #expect(NodeAddress.splitHostPort("127.0.0.1:4001").map { "\($0.0) \($0.1)" } == "127.0.0.1 4001")
        #expect(NodeAddress.splitHostPort("[::1]:4001").map { "\($0.0) \($0.1)" } == "::1 4001")
        #expect(NodeAddress.splitHostPort("host") == nil)
        #expect(NodeAddress.splitHostPort("h:99999") == nil)
    }

    /// Every frame type with an empty, undecodable or valid body: a type that
    /// carries a MessagePack value refuses the first two (the link is then
    /// closed), so no handler reads node 0 of an empty tape; bodyless types
    /// take any body and leave the tape empty.
    @Test(arguments: (0...255).compactMap { PeerFrameType(rawValue: UInt8($0)) })
    func bodiesAreDecodedOrRefused(type: PeerFrameType) throws {
        let object: [UInt8] = [0x81, 0xA1, 0x6E, 0x01]  // {"n": 1}
        func frameBody(_ value: [UInt8]) -> [UInt8] {
            type.hasRawTail ? PeerFrameCodec.rawTailBody(header: value, tail: [9, 9]) : value
        }
        func decode(_ body: [UInt8]) -> Result<(tape: DocumentTape, tail: [UInt8]), PeerFrameError> {
            // A tape that held an earlier frame: its storage is reused, so a
            // stale root would be readable if an empty body got through.
            var tape = DocumentTape()
            try! MessagePackTapeDecoder.decode(copying: [0x81, 0xA3, 0x61, 0x63, 0x6B, 0xC3], into: &tape)  // {"ack": true}
            return body.withUnsafeBytes { raw in
                do throws(PeerFrameError) {
                    let tail = try PeerFrameCodec.decodeBody(type, raw, into: &tape)
                    return .success((tape, Array(tail)))
                } catch {
                    return .failure(error)
                }
            }
        }
        let bodyless: Set<PeerFrameType> = [.pong, .applicationsAck, .proxyCancel, .queryBatch, .queryResultBatch, .leaving, .leavingAck]
        #expect(type.hasMessagePackBody == !bodyless.contains(type))
        for body in [[], frameBody([]), frameBody([0xC1]), frameBody(object + [0])] as [[UInt8]] {
            switch decode(body) {
            case .success(let decoded):
                #expect(!type.hasMessagePackBody, "\(type) accepted \(body)")
                #expect(decoded.tape.isEmpty && decoded.tape.rootObject == nil)
            case .failure(let error):
                #expect(type.hasMessagePackBody, "\(type) refused \(body): \(error.reason)")
                #expect(error.reason.contains("empty") || error.reason.contains("undecodable") || error.reason.contains("malformed"),
                        "\(error.reason)")
            }
        }
        if type.hasMessagePackBody {
            let decoded = try decode(frameBody(object)).get()
            let root = try #require(decoded.tape.rootObject)
            #expect(decoded.tape.member(of: root, named: "n").flatMap { decoded.tape.int64($0) } == 1)
            #expect(decoded.tail == (type.hasRawTail ? [9, 9] : []))
        }
        var entryTape = DocumentTape()
        #expect(throws: PeerFrameError.self) { try [UInt8]().withUnsafeBytes { try PeerFrameCodec.decodeEntry(.query, $0, into: &entryTape) } }
    }

    /// An emptied tape keeps its storage; `rootKind`/`rootObject` still say
    /// there is no root (the stale node 0 is not it).
    @Test func emptiedTapeHasNoRoot() throws {
        var tape = DocumentTape()
        #expect(tape.rootKind == nil && tape.rootObject == nil)
        try MessagePackTapeDecoder.decode(copying: [0x81, 0xA1, 0x6E, 0x01], into: &tape)
        #expect(tape.rootKind == .object && tape.rootObject == 0)
        tape.removeAll()
        #expect(tape.rootKind == nil && tape.rootObject == nil)
        try MessagePackTapeDecoder.decode(copying: [0x92, 0x01, 0x02], into: &tape)
        #expect(tape.rootKind == .array && tape.rootObject == nil)
        tape.shrink(maxNodes: 0, maxStringBytes: 0)
        #expect(tape.rootKind == nil)
    }
}
