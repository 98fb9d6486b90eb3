import Testing
@testable import Singyeong

/// The peer-link handshake state machine: the dialer proves first, the
/// acceptor sends nothing keyed by COOKIE before that proof checked out, and
/// bad HELLOs (version, node id, nonce) are refused with an escaped reason.
@Suite struct PeerHandshakeTests {
    static let dialerID = "0123456789abcdef0123456789abcdef"
    static let acceptorID = "fedcba9876543210fedcba9876543210"

    private func pair(dialerCookie: String = "a-cookie-of-16-bytes", acceptorCookie: String = "a-cookie-of-16-bytes",
                      dialerBinding: String = "", acceptorBinding: String = "") -> (PeerHandshake, PeerHandshake) {
        (PeerHandshake(role: .dialer, cookie: dialerCookie, localID: Self.dialerID, expectedPeerID: Self.acceptorID, channelBinding: dialerBinding),
         PeerHandshake(role: .acceptor, cookie: acceptorCookie, localID: Self.acceptorID, channelBinding: acceptorBinding))
    }

    private func proofs(_ actions: [PeerHandshake.Action]) -> [String] {
        actions.compactMap { if case .sendProof(let mac) = $0 { return mac } else { return nil } }
    }

    private func failure(_ actions: [PeerHandshake.Action]) -> PeerHandshake.Failure? {
        guard actions.count == 1, case .fail(let f) = actions[0] else { return nil }
        return f
    }

    @Test func dialerProvesFirstThenAcceptor() {
        var (d, a) = pair()
        #expect(d.start() == [.sendHello])
        #expect(a.start() == [])
        // The acceptor answers the dialer's HELLO with its own and nothing else.
        #expect(a.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: Self.dialerID, nonce: d.nonce) == [.sendHello])
        let dialerSteps = d.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: Self.acceptorID, nonce: a.nonce)
        #expect(proofs(dialerSteps).count == 1 && dialerSteps.count == 1)
        let acceptorSteps = a.receiveProof(proofs(dialerSteps)[0])
        #expect(proofs(acceptorSteps).count == 1 && acceptorSteps.last == .authenticated)
        #expect(a.phase == .authenticated && a.peerID == Self.dialerID)
        #expect(d.receiveProof(proofs(acceptorSteps)[0]) == [.authenticated])
        #expect(d.phase == .authenticated && d.peerID == Self.acceptorID)
    }

    @Test(arguments: [
        ("wrong cookie", "another-cookie-16-bytes", ""),
        ("other TLS session", "a-cookie-of-16-bytes", "0badbinding"),
    ])
    func acceptorSendsNoProofToAStranger(_ what: String, dialerCookie: String, dialerBinding: String) {
        var (d, a) = pair(dialerCookie: dialerCookie, dialerBinding: dialerBinding)
        _ = d.start()
        var seen = a.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: Self.dialerID, nonce: d.nonce)
        let mac = proofs(d.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: Self.acceptorID, nonce: a.nonce))[0]
        let last = a.receiveProof(mac)
        seen += last
        #expect(proofs(seen).isEmpty, "\(what): the acceptor sent a proof to an unproven dialer")
        #expect(failure(last)?.kind == .proof, "\(what)")
        #expect(a.phase == .failed)
    }

    @Test func anAcceptorProofDoesNotPassAsADialerProof() {
        // A stranger that got some node's acceptor proof cannot replay it
        // as a dialer proof (the role is part of the MAC).
        var (_, a) = pair()
        let strangerNonce = String(repeating: "ab", count: 32)
        _ = a.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: Self.dialerID, nonce: strangerNonce)
        let reflected = PeerAuthentication.proof(cookie: "a-cookie-of-16-bytes", role: .acceptor, senderID: Self.dialerID,
                                                 senderNonce: strangerNonce, receiverID: Self.acceptorID, receiverNonce: a.nonce)
        #expect(failure(a.receiveProof(reflected))?.kind == .proof)
    }

    @Test(arguments: [
        // (version, node id, nonce, kind, text in the reason)
        (Int64(2), dialerID, String(repeating: "a", count: 64), PeerHandshake.FailureKind.version, "protocol version 2"),
        (nil, dialerID, String(repeating: "a", count: 64), .malformed, "malformed HELLO"),
        (PeerFrameCodec.protocolVersion, nil, String(repeating: "a", count: 64), .malformed, "malformed HELLO"),
        (PeerFrameCodec.protocolVersion, "", String(repeating: "a", count: 64), .nodeID, "empty node id"),
        (PeerFrameCodec.protocolVersion, String(repeating: "x", count: 129), String(repeating: "a", count: 64), .nodeID, "129 bytes"),
        (PeerFrameCodec.protocolVersion, "evil\nfake log line", String(repeating: "a", count: 64), .nodeID, "evil\\nfake log line"),
        (PeerFrameCodec.protocolVersion, "bidi\u{202E}txt", String(repeating: "a", count: 64), .nodeID, "bidi\\u{202E}txt"),
        (PeerFrameCodec.protocolVersion, dialerID, "not hex", .malformed, "nonce"),
        (PeerFrameCodec.protocolVersion, dialerID, "abcd", .malformed, "nonce"),
        (PeerFrameCodec.protocolVersion, acceptorID, String(repeating: "a", count: 64), .itself, "itself"),
    ] as [(Int64?, String?, String?, PeerHandshake.FailureKind, String)])
    func badHellosAreRefused(version: Int64?, nodeID: String?, nonce: String?, kind: PeerHandshake.FailureKind, text: String) {
        var (_, a) = pair()
        let f = failure(a.receiveHello(version: version, nodeID: nodeID, nonce: nonce))
        #expect(f?.kind == kind)
        #expect(f?.reason.contains(text) == true, "\(f?.reason ?? "no failure")")
        #expect(f.map { !LogText.hasControlCharacters($0.reason) } == true, "reason not escaped")
        #expect(a.phase == .failed)
    }

    @Test func longestNodeIDIsAccepted() {
        var (_, a) = pair()
        let id = String(repeating: "é", count: 64)  // 128 bytes
        #expect(a.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: id, nonce: String(repeating: "a", count: 64)) == [.sendHello])
    }

    @Test func dialerRefusesAnUnexpectedNode() {
        var (d, _) = pair()
        _ = d.start()
        let f = failure(d.receiveHello(version: PeerFrameCodec.protocolVersion, nodeID: "someone-else", nonce: String(repeating: "a", count: 64)))
        #expect(f?.kind == .wrongNode && f?.reason.contains("someone-else answered") == true)
    }

    @Test func outOfOrderFramesAndRefusals() {
        var (d, a) = pair()
        #expect(failure(a.receiveProof("00"))?.kind == .unexpected)
        _ = d.start()
        #expect(failure(d.receiveOther("query"))?.reason == "query frame before the handshake completed")
        var (d2, _) = pair()
        let f = failure(d2.receiveRefusal(code: "proof", reason: "wrong proof\r\nforged"))
        #expect(f?.kind == .proof && f?.reason == "peer refused the link: wrong proof\\r\\nforged")
        var (d3, _) = pair()
        #expect(failure(d3.receiveRefusal(code: nil, reason: nil))?.kind == .refused)
    }
}

/// Escaping of peer-supplied text for log lines.
@Suite struct LogTextTests {
    @Test(arguments: [
        ("plain-node-1", "plain-node-1"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("back\\slash", "back\\\\slash"),
        ("\u{1B}[31mred", "\\u{1B}[31mred"),
        ("nul\u{0}del\u{7F}c1\u{85}", "nul\\u{0}del\\u{7F}c1\\u{85}"),
        ("rtl\u{202E}zw\u{200B}ls\u{2028}", "rtl\\u{202E}zw\\u{200B}ls\\u{2028}"),
        ("héllo 日本 🙂 \"q\"", "héllo 日本 🙂 \"q\""),
    ])
    func escapes(input: String, expected: String) {
        #expect(LogText.escape(input) == expected)
        #expect(!LogText.hasControlCharacters(LogText.escape(input)))
    }

    @Test func cutsLongText() {
        let long = String(repeating: "a", count: 1000)
        #expect(LogText.escape(long, limit: 10) == "aaaaaaaaaa…(1000 bytes)")
        #expect(LogText.escape(long).count == LogText.defaultLimit + "…(1000 bytes)".count)
        // An escape is never cut in half.
        #expect(LogText.escape("abcdefghi\n", limit: 10) == "abcdefghi…(10 bytes)")
    }

    @Test func controlCharacterCheck() {
        #expect(LogText.hasControlCharacters("a\u{0}"))
        #expect(LogText.hasControlCharacters("a\u{202E}"))
        #expect(!LogText.hasControlCharacters("a\\b é"))
    }
}

/// One log line per source per window for failed handshakes, in a bounded table.
@Suite struct HandshakeFailureLogTests {
    @Test func oneLinePerSourcePerWindowWithACount() {
        var log = HandshakeFailureLog(interval: 60, capacity: 4)
        #expect(log.record(source: "10.0.0.1", reason: "r1", now: 0) == ("10.0.0.1", true) as (String, Bool))
        for i in 1...99 {
            #expect(log.record(source: "10.0.0.1", reason: "r\(i)", now: Double(i) / 10).log == false)
        }
        #expect(log.record(source: "10.0.0.2", reason: "x", now: 5).log == true)
        #expect(log.expire(now: 59.9) == [])
        // The window ends: one summary for the suppressed ones; the quiet source is forgotten.
        let summaries = log.expire(now: 60)
        #expect(summaries == [HandshakeFailureLog.Summary(source: "10.0.0.1", suppressed: 99, lastReason: "r99")])
        #expect(log.expire(now: 65) == [])
        #expect(log.entries["10.0.0.2"] == nil)
        // The summary started a new window: still no line for this source before 120.
        #expect(log.record(source: "10.0.0.1", reason: "again", now: 61).log == false)
        #expect(log.expire(now: 120) == [HandshakeFailureLog.Summary(source: "10.0.0.1", suppressed: 1, lastReason: "again")])
        #expect(log.expire(now: 180) == [])
        #expect(log.entries.isEmpty)
        #expect(log.record(source: "10.0.0.1", reason: "later", now: 181).log == true)
    }

    @Test func tableIsBounded() {
        // Three sources fill the table; the other 997 share one overflow entry.
        var log = HandshakeFailureLog(interval: 60, capacity: 3)
        var lines = 0
        for i in 0..<1000 {
            let (key, logged) = log.record(source: "10.0.\(i / 256).\(i % 256)", reason: "r", now: 1)
            if logged { lines += 1 }
            #expect(i < 3 || key == HandshakeFailureLog.overflowSource)
        }
        #expect(log.entries.count == 4)
        #expect(lines == 4)
        #expect(log.expire(now: 61) == [HandshakeFailureLog.Summary(source: HandshakeFailureLog.overflowSource, suppressed: 996, lastReason: "r")])
    }
}
