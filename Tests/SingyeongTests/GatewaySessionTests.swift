import Testing
@testable import Singyeong

/// The gateway session state machine over a `RecordingConnection`: HELLO on
/// open, IDENTIFY → READY, heartbeats, takeover and op 8 handling, byte for
/// byte through the real HTTP upgrade and WebSocket handler, without sockets.
@Suite struct GatewaySessionTests {
    let h = GatewayHarness()

    @Test func helloFollowsTheUpgrade() {
        let c = h.gatewayConnection()
        let sends = c.takeSent()
        #expect(httpResponses([sends[0]]).map(\.status) == [101])
        let frames = ServerFrame.decode(Array(sends.dropFirst()))
        #expect(frames.count == 1)
        #expect(frames.first?.opcode == 0x1)
        #expect(frames.first?.op == 0)
        #expect(frames.first?.d?["heartbeat_interval"] as? Int == h.settings.heartbeatInterval)
        // IDENTIFY_TIMEOUT runs from HELLO (or the idle deadline, if shorter).
        let identifyFirst = h.settings.identifyTimeout <= h.settings.idleTimeout
        #expect(c.calls.last == (identifyFirst ? .armDeadline(Double(h.settings.identifyTimeout) / 1000) : .startIdleDeadline))
        #expect(c.isOpen)
    }

    @Test func identifyIsAnsweredWithReady() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        let frames = h.identify(c, client: "c1", app: "app")
        #expect(frames.map(\.op) == [2])
        #expect(frames.first?.d?["client_id"] as? String == "c1")
        #expect(frames.first?.d?["restricted"] as? Bool == false)
        #expect(h.gateway.store.find(application: "app", client: "c1") != nil)
        // IDENTIFY switches to the idle deadline; the frame itself was traffic.
        #expect(c.calls.suffix(2) == [.startIdleDeadline, .touchIdleDeadline])
        #expect(c.isOpen)
    }

    /// A record and its session hold each other strongly (no weak
    /// reference, so no side table on the hot path); the session's cleanup
    /// must break that cycle when the connection ends.
    @Test func aClosedSessionIsFreedWithItsRecord() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        h.identify(c, client: "gone", app: "app")
        weak var session = (c.handler as? WebSocketConnectionHandler)?.session as? GatewaySession
        weak var record = h.gateway.store.find(application: "app", client: "gone")
        #expect(session != nil && record != nil)
        #expect(record?.session === session)
        c.finishClose()
        // The connection lets go of its handler, as a finished one does.
        c.handler = h.httpConnection().handler
        #expect(h.gateway.store.find(application: "app", client: "gone") == nil)
        #expect(session == nil, "the session outlived its connection")
        #expect(record == nil, "the record outlived its session")
    }

    @Test func heartbeatIsAcknowledged() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        h.identify(c)
        c.receive(gatewayTextFrame(#"{"op":5,"d":{"client_id":"c1"}}"#))
        let frames = ServerFrame.decode(c.takeSent())
        #expect(frames.map(\.op) == [6])
        #expect(frames.first?.d?["client_id"] as? String == "c1")
        #expect(c.calls.last == .touchIdleDeadline, "a whole frame is traffic")
    }

    @Test func pingIsAnsweredWithPong() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        c.receive(webSocketClientFrame(.ping, Array("abc".utf8)))
        #expect(ServerFrame.decode(c.takeSent()) == [ServerFrame(opcode: 0xA, payload: Array("abc".utf8))])
    }

    /// op 8, cleanup at once, then the close 100 ms later with 1000.
    private func expectFatal(_ c: RecordingConnection, _ error: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let frames = ServerFrame.decode(c.takeSent())
        #expect(frames.map(\.op) == [8], sourceLocation: sourceLocation)
        #expect(frames.first?.d?["error"] as? String == error, sourceLocation: sourceLocation)
        #expect(c.calls.last == .armDeadline(0.1), "the close waits 100 ms", sourceLocation: sourceLocation)
        #expect(c.isOpen, sourceLocation: sourceLocation)
        // Input meanwhile is discarded.
        c.receive(gatewayTextFrame(#"{"op":5,"d":{"client_id":"c1"}}"#))
        #expect(c.takeSent().isEmpty, sourceLocation: sourceLocation)
        c.fireDeadline()
        let close = ServerFrame.decode(c.takeSent())
        #expect(close.map(\.opcode) == [0x8], sourceLocation: sourceLocation)
        #expect(close.first?.closeCode == 1000, sourceLocation: sourceLocation)
        #expect(c.calls.last == .closeAfterFlush("WebSocket close 1000"), sourceLocation: sourceLocation)
        #expect(!c.isOpen, sourceLocation: sourceLocation)
    }

    @Test func identifyTwiceIsFatal() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        h.identify(c)
        c.receive(gatewayTextFrame(#"{"op":1,"d":{"client_id":"c1","application_id":"app"}}"#))
        #expect(h.gateway.store.find(application: "app", client: "c1") == nil, "cleaned up at once")
        expectFatal(c, "already identified")
    }

    @Test func anythingBeforeIdentifyIsFatal() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        c.receive(gatewayTextFrame(#"{"op":5,"d":{"client_id":"c1"}}"#))
        expectFatal(c, "sent payload with non-identify opcode without identifying first")
    }

    @Test func aServerOpFromTheClientIsFatal() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        h.identify(c)
        c.receive(gatewayTextFrame(#"{"op":2,"d":{}}"#))
        expectFatal(c, "invalid client op :ready")
    }

    @Test func binaryFrameOnAJSONSessionIsFatal() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        c.receive(webSocketClientFrame(.binary, Array(#"{"op":1}"#.utf8)))
        expectFatal(c, "decode: payload: invalid websocket opcode/encoding combo: {binary, json}")
    }

    @Test func identifyTimeoutIsFatal() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        c.fireDeadline()
        expectFatal(c, "identify took too long")
    }

    @Test func takeoverReplacesTheOlderConnection() {
        let first = h.gatewayConnection()
        _ = first.takeSent()
        h.identify(first)
        let second = h.gatewayConnection()
        _ = second.takeSent()
        let frames = h.identify(second, reconnect: true)
        #expect(frames.map(\.op) == [2], "the newer connection is READY")
        expectFatal(first, "replaced by a newer connection")
        #expect(second.isOpen)
        let record = h.gateway.store.find(application: "app", client: "c1")
        #expect(record?.session === (second.handler as? WebSocketConnectionHandler)?.session)
        // The older connection ending later leaves the newer registration alone.
        first.finishClose()
        #expect(h.gateway.store.find(application: "app", client: "c1") === record)
    }

    @Test func duplicateWithoutReconnectIsRefused() {
        let first = h.gatewayConnection()
        _ = first.takeSent()
        h.identify(first)
        let second = h.gatewayConnection()
        _ = second.takeSent()
        second.receive(gatewayTextFrame(#"{"op":1,"d":{"client_id":"c1","application_id":"app"}}"#))
        expectFatal(second, "c1: already registered for app app")
        #expect(first.takeSent().isEmpty, "the registered client is untouched")
        #expect(h.gateway.store.find(application: "app", client: "c1") != nil)
    }

    @Test func peerCloseDeregisters() {
        let c = h.gatewayConnection()
        _ = c.takeSent()
        h.identify(c)
        c.finishClose()
        #expect(h.gateway.store.find(application: "app", client: "c1") == nil)
    }
}
