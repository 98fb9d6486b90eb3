/// One node-to-node connection (cluster.md §3): the authenticated, ordered
/// link over which queries, results and deliveries travel.
///
/// Handshake (`PeerHandshake` has the order and why): HELLOs both ways, then
/// the dialer's AUTH proof, then the acceptor's. Each side checks the other's
/// proof (HMAC over its own fresh nonce) before the link counts as up; any
/// other frame before that, a wrong version, a wrong proof (wrong COOKIE), a
/// bad or unexpected node id closes the link with a REFUSE and a logged
/// reason (rate-limited per source: `Cluster.logHandshakeFailure`). Until
/// the peer has proved itself its frames are limited to
/// `PeerFrameCodec.handshakeMaxFrame` bytes.
final class PeerLink: ConnectionHandler {
    /// Where the link is in its life.
    enum State { case handshaking, up, closed }

    unowned let cluster: Cluster
    /// We dialed (and know which node we expect).
    let isOutbound: Bool
    let expectedNodeID: String?
    private(set) var state = State.handshaking
    /// The peer's node id: claimed in its HELLO (checked for length and
    /// control characters), proved once the link is up.
    private(set) var peerNodeID: String?
    /// Made on first use: it needs the connection's TLS channel binding.
    private var handshake: PeerHandshake?
    private(set) weak var connection: ConnectionContext?
    /// Bytes in the frame being waited for (buffer sizing hint).
    private var needed: Int?
    private var tape = DocumentTape()
    /// Applications the peer has clients of; nil until its first snapshot
    /// arrived (until then the peer is asked every query).
    private(set) var knownApplications: Set<String>?

    /// The peer's client count from its last ping, and when it arrived (load balancing).
    var reportedClientCount: Int?
    var reportedAt: Double = 0

    init(cluster: Cluster, outboundTo nodeID: String?) {
        self.cluster = cluster
        self.isOutbound = nodeID != nil
        self.expectedNodeID = nodeID
    }

    var isUp: Bool { state == .up }
    /// The peer said it is shutting down: none of its clients is a
    /// candidate any more, though the link still carries answers.
    private(set) var isLeaving = false

    // MARK: ConnectionHandler

    /// Outbound only (accepted connections wait for the dialer's HELLO).
    func connectionEstablished(_ connection: ConnectionContext) {
        self.connection = connection
        var machine = handshakeMachine(connection)
        let actions = machine.start()
        handshake = machine
        perform(actions, on: connection)
    }

    var bytesNeededHint: Int? { needed }

    /// A stranger's bytes stay within one handshake frame.
    var maxBufferedInput: Int? { state == .up ? nil : PeerFrameCodec.handshakeMaxFrame }

    func connection(_ connection: ConnectionContext, received bytes: UnsafeMutableRawBufferPointer) -> Int {
        self.connection = connection
        // Only an authenticated link earns the idle deadline; before that
        // the handshake deadline keeps a trickling stranger bounded.
        if state == .up { connection.touchIdleDeadline() }
        var offset = 0
        while offset < bytes.count && connection.isOpen && state != .closed {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let header: PeerFrameHeader?
            do {
                // A stranger gets a few KiB until it has proved COOKIE: a
                // larger length prefix closes the link before anything is
                // buffered for it.
                header = try PeerFrameCodec.next(rest, maxBody: state == .up ? cluster.maxFrameBody : PeerFrameCodec.handshakeMaxBody)
            } catch {
                fail(connection, error.reason)
                return bytes.count
            }
            guard let header else {
                needed = PeerFrameCodec.bytesNeeded(rest)
                return offset
            }
            needed = nil
            let body = UnsafeRawBufferPointer(rebasing: rest[header.body])
            handle(type: header.type, requestID: header.requestID, body: body, on: connection)
            offset += header.frameLength
        }
        return offset
    }

    func connectionShouldShutDown(_ connection: ConnectionContext) {
        connection.closeAfterFlush(reason: "shutdown")
    }

    /// No frame for 3 ticks (pings flow every tick): the peer is gone. Before
    /// the link is up: the handshake took too long.
    func connectionDeadlineExpired(_ connection: ConnectionContext) {
        fail(connection, state == .up ? "no traffic for \(cluster.linkTimeoutDescription)" : "handshake not finished within HANDSHAKE_TIMEOUT")
    }

    func connectionClosed(_ connection: ConnectionContext) {
        let wasUp = state == .up || failedWhileUp
        state = .closed
        batcher.discard()
        cluster.linkClosed(self, wasUp: wasUp, reason: connection.endReason ?? "closed")
    }

    // MARK: Frames

    /// The link failed after it had come up (so closing it is not a failed dial).
    private var failedWhileUp = false

    /// Closes at once. `reason` holds peer text only escaped.
    private func fail(_ connection: ConnectionContext, _ reason: String) {
        if state == .up {
            cluster.logger.warning("peer link closed", metadata: [
                "peer": "\(connection.peer.description)", "node": "\(LogText.escape(peerNodeID ?? "?"))", "reason": "\(reason)",
            ])
        } else {
            cluster.logHandshakeFailure(self, connection: connection, reason: reason, wrongCookie: false)
        }
        failedWhileUp = failedWhileUp || state == .up
        state = .closed
        connection.abort(reason: reason)
    }

    /// Applies an `applications` frame.
    private func apply(_ message: ApplicationsMessage) {
        if message.full { knownApplications = [] }
        guard knownApplications != nil else { return }
        for app in message.add { knownApplications!.insert(app) }
        for app in message.remove { knownApplications!.remove(app) }
    }

    /// Whether a query for `application` (nil: any) must be sent to this peer.
    func mayHaveClients(of application: String?) -> Bool {
        guard !isLeaving else { return false }
        guard let application, let knownApplications else { return true }
        return knownApplications.contains(application)
    }

    /// The TLS session's exporter value as hex, or "" on plain TCP.
    static func channelBinding(_ connection: ConnectionContext) -> String {
        connection.tlsExporter(label: "EXPORTER-singyeong-peer").map(PeerAuthentication.hex) ?? ""
    }

    private func handshakeMachine(_ connection: ConnectionContext) -> PeerHandshake {
        handshake ?? PeerHandshake(role: isOutbound ? .dialer : .acceptor, cookie: cluster.cookie, localID: cluster.nodeID,
                                   expectedPeerID: expectedNodeID, channelBinding: PeerLink.channelBinding(connection))
    }

    /// Carries out what the handshake decided, in order.
    private func perform(_ actions: [PeerHandshake.Action], on connection: ConnectionContext, tellPeer: Bool = true) {
        for action in actions {
            guard connection.isOpen, state == .handshaking else { return }
            switch action {
            case .sendHello:
                var w = FrameWriter(encoding: .msgpack)
                w.beginObject(count: 3)
                w.key("v"); w.int(PeerFrameCodec.protocolVersion)
                w.key("node"); w.string(cluster.nodeID)
                w.key("nonce"); w.string(handshake?.nonce ?? "")
                w.endObject()
                connection.send(PeerFrameCodec.make(.hello, body: w.bytes))
            case .sendProof(let mac):
                var w = FrameWriter(encoding: .msgpack)
                w.beginObject(count: 1)
                w.key("mac"); w.string(mac)
                w.endObject()
                connection.send(PeerFrameCodec.make(.auth, body: w.bytes))
            case .authenticated:
                state = .up
                connection.startIdleDeadline()
                cluster.linkUp(self)
            case .fail(let failure):
                cluster.logHandshakeFailure(self, connection: connection, reason: failure.reason, wrongCookie: failure.kind == .proof)
                if tellPeer {
                    var w = FrameWriter(encoding: .msgpack)
                    w.beginObject(count: 2)
                    w.key("code"); w.string(failure.kind.rawValue)
                    w.key("reason"); w.string(failure.reason)
                    w.endObject()
                    connection.send(PeerFrameCodec.make(.refuse, body: w.bytes))
                }
                state = .closed
                // Flush (not abort) so the REFUSE reaches the peer; a
                // draining connection reads nothing more.
                connection.closeAfterFlush(reason: failure.reason)
            }
        }
    }

    /// Queries and results queued during this loop turn; sent as one frame
    /// at its end (`queryBatch` / `queryResultBatch`, or a plain frame when
    /// there is only one).
    private lazy var batcher = PeerBatcher(link: self)

    /// Queues a query or a query result for the end-of-turn batch.
    func sendBatched(_ type: PeerFrameType, requestID: UInt64, body: [UInt8]) {
        guard state == .up else { return }
        batcher.add(type, requestID: requestID, body: body)
        cluster.loop.runAtEndOfTurn(batcher)
    }

    /// The last ping's round trip (nil until a pong came back), for metrics.
    private(set) var roundTripSeconds: Double?
    private var pingSentAt: Double = 0
    private var pingID: UInt64 = 0

    /// A tick's ping; its pong gives the link's round-trip time.
    func sendPing(body: [UInt8]) {
        pingID &+= 1
        pingSentAt = Metrics.monotonicSeconds()
        send(.ping, requestID: pingID, body: body)
    }

    /// Sends a frame if the link is up (dropped otherwise: the caller's
    /// deadline covers lost requests).
    func send(_ type: PeerFrameType, requestID: UInt64 = 0, body: [UInt8]) {
        guard state == .up, let connection else { return }
        connection.send(PeerFrameCodec.make(type, requestID: requestID, body: body))
    }

    private func handle(type raw: UInt8, requestID: UInt64, body: UnsafeRawBufferPointer, on connection: ConnectionContext) {
        guard let type = PeerFrameType(rawValue: raw) else {
            fail(connection, "unknown frame type \(raw)")
            return
        }
        // Every frame that carries a MessagePack value must decode to one
        // (an empty body is a protocol error too), so handlers below always
        // find a root node.
        let tail: UnsafeRawBufferPointer
        do {
            tail = try PeerFrameCodec.decodeBody(type, body, into: &tape)
        } catch {
            fail(connection, error.reason)
            return
        }
        if state == .handshaking {
            handshake(type, on: connection)
            return
        }
        switch type {
        case .hello, .auth:
            fail(connection, "handshake frame on an established link")
        case .refuse:
            let reason = !tape.isEmpty && tape.kind(tape.root) == .object
                ? tape.member(of: tape.root, named: "reason").flatMap { tape.kind($0) == .string ? tape.string($0) : nil } : nil
            fail(connection, "peer refused the link: \(LogText.escape(reason ?? "no reason given"))")
        case .ping:
            if let message = PingMessage(tape: tape) {
                reportedClientCount = Int(message.clientCount)
                reportedAt = cluster.loop.now
            }
            connection.send(PeerFrameCodec.make(.pong, requestID: requestID, body: []))
        case .pong:
            if requestID == pingID, pingSentAt > 0 {
                roundTripSeconds = Metrics.monotonicSeconds() - pingSentAt
                pingSentAt = 0
            }
        case .query:
            cluster.answerQuery(from: self, requestID: requestID, tape: tape, body: body)
        case .queryResult:
            cluster.receiveQueryResult(from: self, requestID: requestID, tape: tape, body: body)
        case .queryBatch, .queryResultBatch:
            guard let entries = PeerFrameCodec.batchEntries(body) else {
                fail(connection, "malformed \(type) frame")
                return
            }
            for entry in entries {
                let entryBody = UnsafeRawBufferPointer(rebasing: body[entry.body])
                do {
                    try PeerFrameCodec.decodeEntry(type == .queryBatch ? .query : .queryResult, entryBody, into: &tape)
                } catch {
                    fail(connection, error.reason)
                    return
                }
                if type == .queryBatch {
                    cluster.answerQuery(from: self, requestID: entry.requestID, tape: tape, body: entryBody)
                } else {
                    cluster.receiveQueryResult(from: self, requestID: entry.requestID, tape: tape, body: entryBody)
                }
                if state != .up { return }
            }
        case .deliver:
            cluster.receiveDeliver(from: self, tape: tape, body: body)
        case .event:
            cluster.receiveEvent(from: self, tape: tape)
        case .applications:
            if let message = ApplicationsMessage(tape: tape) {
                apply(message)
                if message.ack { connection.send(PeerFrameCodec.make(.applicationsAck, requestID: requestID, body: [])) }
            }
        case .applicationsAck:
            cluster.receiveApplicationsAck(from: self, requestID: requestID)
        case .route:
            cluster.receiveRoute(from: self, requestID: requestID, tape: tape, body: body)
        case .routeResult:
            cluster.receiveRouteResult(from: self, requestID: requestID, tape: tape)
        case .proxy:
            cluster.receiveProxy(from: self, requestID: requestID, tape: tape, tail: tail)
        case .proxyResult:
            cluster.receiveProxyResult(from: self, requestID: requestID, tape: tape, tail: tail)
        case .tags:
            cluster.answerTags(from: self, requestID: requestID, tape: tape)
        case .tagsResult:
            cluster.receiveTagsResult(from: self, requestID: requestID, tape: tape)
        case .proxyCancel:
            cluster.receiveProxyCancel(from: self, requestID: requestID)
        case .leaving:
            // Acknowledged on this ordered link after everything already
            // sent to the peer on it.
            isLeaving = true
            cluster.peerLeaving(self)
            connection.send(PeerFrameCodec.make(.leavingAck, requestID: requestID, body: []))
        case .leavingAck:
            cluster.receiveLeavingAck(from: self, requestID: requestID)
        case .queueRequest:
            cluster.receiveQueueRequest(from: self, requestID: requestID, tape: tape, body: body)
        case .queueReply:
            cluster.receiveQueueReply(from: self, requestID: requestID, tape: tape, body: body)
        case .queueMessage:
            cluster.receiveQueueMessage(from: self, tape: tape, body: body)
        }
        tape.shrink(maxNodes: 1 << 16, maxStringBytes: 1 << 20)
    }

    /// A frame before the link is up, through the handshake state machine.
    private func handshake(_ type: PeerFrameType, on connection: ConnectionContext) {
        let root = tape.root
        let isObject = !tape.isEmpty && tape.kind(root) == .object
        func string(_ name: StaticString) -> String? {
            guard isObject, let node = tape.member(of: root, named: name), tape.kind(node) == .string else { return nil }
            return tape.string(node)
        }
        var machine = handshakeMachine(connection)
        let actions: [PeerHandshake.Action]
        switch type {
        case .hello:
            actions = machine.receiveHello(version: isObject ? tape.member(of: root, named: "v").flatMap { tape.int64($0) } : nil,
                                           nodeID: string("node"), nonce: string("nonce"))
            if machine.phase == .awaitingProof { peerNodeID = machine.peerID }
        case .auth:
            actions = machine.receiveProof(string("mac"))
        case .refuse:
            actions = machine.receiveRefusal(code: string("code"), reason: string("reason"))
        default:
            actions = machine.receiveOther("\(type)")
        }
        handshake = machine
        perform(actions, on: connection, tellPeer: type != .refuse)
    }
}

/// Collects a link's queries (and results) within one loop turn and sends
/// them as one frame at the end of the turn.
final class PeerBatcher: EndOfTurnTask {
    /// Weak: the end-of-turn list keeps the batcher, not the link, and a
    /// link can close (and go away) earlier in the same turn.
    weak var link: PeerLink?
    private var queries: [(UInt64, [UInt8])] = []
    private var results: [(UInt64, [UInt8])] = []

    init(link: PeerLink) { self.link = link }

    func add(_ type: PeerFrameType, requestID: UInt64, body: [UInt8]) {
        if type == .query { queries.append((requestID, body)) } else { results.append((requestID, body)) }
    }

    override func runEndOfTurn() {
        flush(&queries, single: .query, batch: .queryBatch)
        flush(&results, single: .queryResult, batch: .queryResultBatch)
    }

    /// Drops what is queued (the link closed).
    func discard() {
        queries.removeAll()
        results.removeAll()
    }

    /// Sends the entries as one frame, or several when one would pass the
    /// peer's frame-body limit.
    private func flush(_ entries: inout [(UInt64, [UInt8])], single: PeerFrameType, batch: PeerFrameType) {
        defer { entries.removeAll(keepingCapacity: true) }
        guard !entries.isEmpty, let link else { return }
        if entries.count == 1 {
            link.send(single, requestID: entries[0].0, body: entries[0].1)
            return
        }
        let limit = link.cluster.maxFrameBody
        var body: [UInt8] = []
        for (id, entryBody) in entries {
            if !body.isEmpty && body.count + entryBody.count + 12 > limit {
                link.send(batch, body: body)
                body.removeAll(keepingCapacity: true)
            }
            PeerFrameCodec.appendBatchEntry(requestID: id, body: entryBody, to: &body)
        }
        if !body.isEmpty { link.send(batch, body: body) }
    }
}
