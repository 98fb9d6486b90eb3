/// A WebSocket connection after the upgrade: decodes frames in place,
/// answers pings, runs the close handshake, enforces the idle timeout and the
/// message size limit, and hands every data message to the connection's
/// session (a `WebSocketMessageHandler`, made by the endpoint's factory; on
/// open the session sends its greeting).
final class WebSocketConnectionHandler: ConnectionHandler {
    /// Limits, deadline queues, logger and session factory shared by every
    /// connection; the node owns it.
    unowned let endpoint: WebSocketEndpoint
    /// Owns this handler.
    unowned let connection: ConnectionContext
    let encoding: PayloadEncoding
    private var assembler: WebSocketMessageAssembler
    /// We sent a close frame; nothing else may follow it.
    private var closeSent = false
    /// A delayed close (after op 7/8) is pending; its deadline is armed.
    private var closeDelayed = false
    /// The code the delayed close will carry (1000, or 1001 on shutdown).
    private var delayedCloseCode = WebSocketCloseCode.normal
    private(set) var session: WebSocketMessageHandler!
    /// IDENTIFY arrived and was accepted for processing: from then on the
    /// idle deadline runs and messages may reach MAX_FRAME_SIZE. Before, the
    /// IDENTIFY_TIMEOUT deadline (armed at HELLO, never re-armed by input)
    /// and IDENTIFY_MAX_SIZE bound what an unidentified peer can hold.
    private(set) var hasIdentified = false
    /// Set inside the assembler's callback, applied after it returns (the
    /// assembler may not be touched while it runs).
    private var raiseMessageLimit = false
    /// IDLE_TIMEOUT is the shorter one, so the pre-IDENTIFY deadline is the
    /// plain idle close (1000, no reason) rather than op 8.
    private var identifyDeadlineIsIdle = false

    init(endpoint: WebSocketEndpoint, connection: ConnectionContext, encoding: PayloadEncoding) {
        self.endpoint = endpoint
        self.connection = connection
        self.encoding = encoding
        assembler = WebSocketMessageAssembler(maxMessageSize: endpoint.limits.identifyMaxSize)
    }

    /// Called right after the 101 response is queued and this handler put on
    /// the connection.
    func start() {
        session = endpoint.makeSession(self, connection, encoding)
        // Whichever of IDENTIFY_TIMEOUT and IDLE_TIMEOUT is shorter, counted
        // from HELLO and not re-armed by anything until IDENTIFY.
        if endpoint.limits.identifyTimeout <= endpoint.limits.idleTimeout {
            connection.armDeadline(in: endpoint.identifyDeadlines)
        } else {
            identifyDeadlineIsIdle = true
            connection.startIdleDeadline()
        }
        session.opened()
    }

    /// The session accepted an IDENTIFY: switch to the idle deadline and the
    /// full message size.
    func identifyAccepted() {
        guard !hasIdentified else { return }
        hasIdentified = true
        raiseMessageLimit = true
        if !closeDelayed { connection.startIdleDeadline() }
    }

    /// protocol.md §5.4: after op 8 / op 7 the socket closes ~100 ms later
    /// with 1000 and an empty reason; input meanwhile is discarded.
    func closeAfterDelay(code: WebSocketCloseCode = .normal) {
        guard !closeDelayed, !closeSent else { return }
        closeDelayed = true
        delayedCloseCode = code
        connection.armDeadline(in: endpoint.closeDelayDeadlines)
    }

    var bytesNeededHint: Int? { assembler.bytesNeededHint }

    func connection(_ connection: ConnectionContext, received bytes: UnsafeMutableRawBufferPointer) -> Int {
        let framesBefore = assembler.framesReceived
        do {
            let consumed = try assembler.consume(bytes) { event in
                self.handle(event, on: connection)
            }
            if raiseMessageLimit {
                raiseMessageLimit = false
                assembler.maxMessageSize = max(assembler.maxMessageSize, endpoint.limits.maxFrameSize)
            }
            // Whole frames count as traffic (§5.3); bytes of a partial one do not.
            if hasIdentified && !closeDelayed && assembler.framesReceived != framesBefore {
                connection.touchIdleDeadline()
            }
            return consumed
        } catch {
            endpoint.logger.info("WebSocket protocol error; closing", metadata: [
                "peer": "\(connection.peer.description)", "code": "\(error.closeCode.rawValue)", "reason": "\(error.reason)",
            ])
            close(connection, code: error.closeCode, reason: "\(error.reason)")
            return bytes.count
        }
    }

    private func handle(_ event: WebSocketEvent, on connection: ConnectionContext) {
        guard connection.isOpen, !closeSent else { return }
        switch event {
        case .message(let opcode, let payload):
            session.received(opcode: opcode, payload: payload)
        case .ping(let payload):
            connection.send(WebSocketFrames.make(opcode: .pong, payload: payload))
        case .pong:
            break
        case .close(let code, _):
            // Echo the peer's code (RFC 6455 §5.5.1), then close once flushed.
            let reply = code.map { WebSocketCloseCode(rawValue: $0) } ?? .normal
            close(connection, code: reply, reason: "")
        }
    }

    /// Sends a close frame (once) and closes after it is written.
    func close(_ connection: ConnectionContext, code: WebSocketCloseCode, reason: String) {
        if !closeSent {
            closeSent = true
            let payload = WebSocketFrameEncoder.closePayload(code: code, reason: Array(reason.utf8))
            payload.withUnsafeBytes { connection.send(WebSocketFrames.make(opcode: .close, payload: $0)) }
        }
        connection.closeAfterFlush(reason: "WebSocket close \(code.rawValue)")
    }

    /// SIGTERM: the session says goodbye if it can (the gateway: GOODBYE,
    /// op 7, to an identified client, so it reconnects, elsewhere if it can;
    /// the close 100 ms later carries 1001); otherwise the connection is
    /// closed with 1001 at once.
    func connectionShouldShutDown(_ connection: ConnectionContext) {
        if closeDelayed || closeSent { return }
        if !session.serverShuttingDown() {
            close(connection, code: .goingAway, reason: "server shutting down")
        }
    }

    /// Either the delayed close after op 7/8 is due, or (protocol.md §5.3)
    /// no frame arrived for IDLE_TIMEOUT: close with code 1000 and no reason
    /// (§5.4: every protocol-level close is 1000).
    func connectionDeadlineExpired(_ connection: ConnectionContext) {
        if !closeDelayed && !hasIdentified && !identifyDeadlineIsIdle {
            endpoint.logger.info("WebSocket did not identify in time; closing", metadata: [
                "peer": "\(connection.peer.description)", "identify_timeout_ms": "\(endpoint.limits.identifyTimeout)",
            ])
            session.identifyTimedOut()
            return
        }
        if !closeDelayed {
            endpoint.logger.debug("WebSocket idle timeout", metadata: ["peer": "\(connection.peer.description)"])
        }
        close(connection, code: closeDelayed ? delayedCloseCode : .normal, reason: "")
    }

    func connectionClosed(_ connection: ConnectionContext) {
        assembler.reset()
        session?.cleanUp()
    }
}

/// Server frames as `OutboundBytes`: header and payload in one allocation, the
/// payload copied exactly once.
enum WebSocketFrames {
    static func make(opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer) -> OutboundBytes {
        let headerLength = WebSocketFrameEncoder.headerLength(payloadLength: payload.count)
        return OutboundBytes.make(count: headerLength + payload.count) { destination in
            _ = WebSocketFrameEncoder.writeHeader(opcode: opcode, fin: true, payloadLength: payload.count, to: destination)
            if let base = payload.baseAddress {
                (destination + headerLength).copyMemory(from: base, byteCount: payload.count)
            }
        }
    }
}
