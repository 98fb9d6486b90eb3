/// The gateway protocol on one WebSocket (protocol.md §2–§8): decode each
/// frame, enforce the lifecycle (IDENTIFY first, heartbeats), and turn
/// dispatches into routing.
///
/// Frames are handled strictly in order and every reply is queued before the
/// next frame is looked at (§2.4). Fatal errors send op 8, clean up at once
/// (exactly once, §5.5) and close the socket 100 ms later; frames arriving in
/// between are discarded.
///
/// It is the `WebSocketMessageHandler` of its connection: the WebSocket
/// handler calls it on open, per message, on timeouts and at shutdown.
final class GatewaySession: WebSocketMessageHandler {
    unowned let gateway: Gateway
    unowned let socket: WebSocketConnectionHandler
    unowned let connection: ConnectionContext
    let encoding: PayloadEncoding
    private(set) var record: ClientRecord?
    /// READY was sent (the client is registered).
    var isIdentified: Bool { record != nil }
    /// A fatal error or GOODBYE was sent; input is ignored from now on.
    private(set) var isClosing = false
    /// The connection ended (cleanup ran).
    private var cleanedUp = false
    /// IDENTIFY is waiting for peers to acknowledge a new application; data
    /// frames are held (copied, padded for the JSON decoder) until READY.
    private var awaitingAnnouncement = false
    private var held: [(WebSocketOpcode, [UInt8])] = []
    /// The last routed JSON frame's envelope: a frame that repeats it is not
    /// walked again, only its payload validated. At most a few KiB.
    /// Exempt from dynamic exclusivity checks, and its methods `mutating`,
    /// so that using it neither copies it (eight reference counts per SEND)
    /// nor checks: nothing it calls can reach this session.
    @exclusivity(unchecked) private var envelope = EnvelopeTemplate()
    private var heldBytes = 0
    /// Re-armed by every HEARTBEAT; expiry is "heartbeat took too long".
    /// Captures `self` unowned: a weak reference would give the session a
    /// side table, which makes every retain and release of it slow (it is
    /// retained for each message delivered to it). Safe because `deinit`
    /// disarms the entry, so it cannot fire after the session is gone.
    private var heartbeatDeadline: DeadlineEntry {
        if let heartbeatEntry { return heartbeatEntry }
        let entry = DeadlineEntry { [unowned self] in self.heartbeatExpired() }
        heartbeatEntry = entry
        return entry
    }
    private var heartbeatEntry: DeadlineEntry?

    // Not through `heartbeatDeadline`: making the entry here would capture
    // `self` while it is being destroyed.
    deinit { heartbeatEntry?.cancel() }

    /// Longest `client_id` / `application_id` / `namespace`, bytes.
    static let maxIDLength = 255
    /// Longest identify `ip` (a host, host:port or URL base for the proxy), bytes.
    static let maxIPLength = 1024
    /// Most identify `tags`, and the longest tag, bytes.
    static let maxTags = 64
    static let maxTagLength = 255

    init(gateway: Gateway, socket: WebSocketConnectionHandler, connection: ConnectionContext, encoding: PayloadEncoding) {
        self.gateway = gateway
        self.socket = socket
        self.connection = connection
        self.encoding = encoding
    }

    // MARK: WebSocketMessageHandler

    /// HELLO (protocol.md §3), right after the 101.
    func opened() {
        connection.send(gateway.frames.hello(encoding: encoding, timestamp: gateway.loop.nowMilliseconds))
    }

    /// IDENTIFY_TIMEOUT passed before IDENTIFY.
    func identifyTimedOut() {
        fatal("identify took too long")
    }

    /// SIGTERM: an identified client gets GOODBYE with close code 1001;
    /// otherwise false (the socket closes with 1001 at once).
    func serverShuttingDown() -> Bool {
        guard isIdentified && !isClosing else { return false }
        goodbye(reason: "server shutting down", closeCode: .goingAway)
        return true
    }

    // MARK: Output

    /// A routed frame for this client (already in its encoding).
    func deliver(_ frame: OutboundBytes) {
        guard !isClosing else { return }
        connection.send(frame)
    }

    private func send(_ writer: FrameWriter) {
        connection.send(writer.webSocketFrame())
    }

    /// op 3: `{"error": text, "extra_info": …}` (extra_info written by `extra`,
    /// or the key omitted when nil — the restricted-dispatch case).
    private func invalid(_ error: String, extra: ((inout FrameWriter) -> Void)?) {
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 3, t: nil, ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: extra == nil ? 1 : 2)
        w.key("error"); w.string(error)
        if let extra { w.key("extra_info"); extra(&w) }
        w.endObject()
        w.endObject()
        send(w)
    }

    /// op 8 then close after 100 ms (§5.4), cleanup now.
    func fatal(_ error: String, extra: ((inout FrameWriter) -> Void)? = nil) {
        guard !isClosing else { return }
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 8, t: nil, ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: 2)
        w.key("error"); w.string(error)
        w.key("extra_info")
        if let extra { extra(&w) } else { w.null() }
        w.endObject()
        w.endObject()
        send(w)
        gateway.logger.debug("gateway error; closing", metadata: ["peer": "\(connection.peer.description)", "error": "\(error)"])
        isClosing = true
        cleanUp()
        socket.closeAfterDelay()
    }

    /// op 7 GOODBYE `{"reason": "load balancing"}`, cleanup now, close after
    /// 100 ms (protocol.md §5.6): the client reconnects, possibly elsewhere.
    /// `closeCode` 1001 on shutdown: singyeong.py reconnects only after a
    /// close code other than 1000, shinkei on the GOODBYE itself.
    func goodbye(reason: StaticString = "load balancing", closeCode: WebSocketCloseCode = .normal) {
        guard !isClosing else { return }
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 7, t: nil, ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: 1)
        w.key("reason"); w.string(reason)
        w.endObject()
        w.endObject()
        send(w)
        isClosing = true
        cleanUp()
        socket.closeAfterDelay(code: closeCode)
    }

    /// Deregisters (once). Called on fatal errors and when the socket ends.
    func cleanUp() {
        cleanedUp = true
        heartbeatDeadline.cancel()
        if let record {
            record.session = nil
            gateway.deregister(record)
        }
    }

    // MARK: Input

    /// One complete WebSocket data message.
    func received(opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer) {
        guard !isClosing else { return }
        // Read once: every read of an unowned reference is an atomic
        // retain and release (~13 per SEND when each use read it).
        let gateway = self.gateway
        if awaitingAnnouncement {
            // Bounded: a client has no business sending much before READY.
            heldBytes += payload.count
            guard held.count < 64, heldBytes <= 1 << 20 else {
                fatal("too many frames before READY")
                return
            }
            held.append((opcode, Array(payload) + [UInt8](repeating: 0, count: InputBuffer.padding)))
            return
        }
        // §2.2: the frame type must match the encoding (checked before identify too).
        let isText = opcode == .text
        if isText != (encoding == .json) {
            fatal("decode: payload: invalid websocket opcode/encoding combo: {\(isText ? "text" : "binary"), \(encoding == .json ? "json" : "msgpack")}")
            return
        }
        // The shared storage is moved here for the duration (a frame handled
        // meanwhile, a held one replayed, finds it empty and grows its own).
        var tape = DocumentTape()
        swap(&tape, &gateway.tape)
        defer {
            // A huge frame (up to MAX_FRAME_SIZE of tiny values) can grow the
            // shared tape to hundreds of MiB; give that back at once.
            tape.shrink(maxNodes: 1 << 16, maxStringBytes: 1 << 20)
            swap(&tape, &gateway.tape)
        }
        // A SEND/BROADCAST payload is validated, not decoded: it is
        // forwarded as bytes, and a frame of millions of tiny members must
        // not cost millions of nodes (issue 10). Any other frame with an
        // unexpanded "payload" (a metadata key of that name) is decoded again
        // in full. Either way at most MAX_FRAME_VALUES nodes: a frame of
        // millions of values anywhere else is refused after that many.
        let maxNodes = gateway.maxFrameValues
        do {
            if encoding == .json && envelope.decode(payload, into: &tape, maxNodes: maxNodes) {
                // The last routed frame again, with another payload (issue 13).
            } else {
                // A target whose bytes the query cache holds is not walked again.
                try DocumentDecoder.decode(payload, encoding: encoding, into: &tape, lazyPayload: true, maxNodes: maxNodes,
                                           knownTargets: gateway.queryCache)
                if tape.hasUnexpanded {
                    if !Self.isRoutedEvent(tape) {
                        try DocumentDecoder.decode(payload, encoding: encoding, into: &tape, maxNodes: maxNodes)
                    } else if encoding == .json {
                        rememberEnvelope(tape, source: payload)
                    }
                }
            }
        } catch .tooManyValues(let limit) {
            gateway.logger.info("frame over MAX_FRAME_VALUES; closing", metadata: [
                "peer": "\(connection.peer.description)", "limit": "\(limit)", "bytes": "\(payload.count)",
            ])
            fatal("decode: more than \(limit) values outside the payload (MAX_FRAME_VALUES)")
            return
        } catch {
            fatal("decode: \(error.description)")
            return
        }
        let message = DecodedMessage(tape: tape, source: payload, encoding: encoding)
        handle(message)
    }

    /// Keeps a routed frame's envelope when its payload is unexpanded (a
    /// SEND's usual array or object), for the next frame (`EnvelopeTemplate`).
    private func rememberEnvelope(_ tape: DocumentTape, source: UnsafeRawBufferPointer) {
        guard let d = tape.member(of: tape.root, named: "d"), let payload = tape.member(of: d, named: "payload"),
              tape.kind(payload) == .unexpanded
        else { return }
        envelope.remember(tape, source: source, payload: payload, depth: 2)  // root → "d" → "payload"
    }

    /// Whether the frame is a SEND, BROADCAST or QUEUE, the events whose
    /// payload is only ever forwarded (a queue stores it as bytes).
    private static func isRoutedEvent(_ tape: DocumentTape) -> Bool {
        guard let root = tape.rootObject, let t = tape.member(of: root, named: "t") else { return false }
        return tape.isString(t, equalTo: "SEND") || tape.isString(t, equalTo: "BROADCAST") || tape.isString(t, equalTo: "QUEUE")
    }

    private func handle(_ m: DecodedMessage) {
        let gateway = self.gateway
        // The gate for everything below, which reads `m.tape.root` freely.
        guard m.tape.rootObject != nil else {
            fatal("decode: payload: unrecoverable")
            return
        }
        let opNode = m.tape.member(of: m.tape.root, named: "op")
        let op = opNode.flatMap { m.tape.int64($0) }.flatMap { GatewayOpcode(rawValue: $0) }
        guard let record else {
            if op == .identify { identify(m) } else { fatal("sent payload with non-identify opcode without identifying first") }
            return
        }
        // §5.2: checked on every frame, before handling it.
        if Double(record.lastHeartbeatTime) + 1.5 * Double(gateway.heartbeatInterval) < Double(gateway.loop.nowMilliseconds) {
            fatal("heartbeat took too long")
            return
        }
        switch op {
        case .identify?: fatal("already identified")
        case .dispatch?: dispatch(m, record: record)
        case .heartbeat?: heartbeat(record)
        case let other?: fatal("\(other.invalidClientOpText)")
        case nil: fatal("invalid client op nil")
        }
    }

    // MARK: IDENTIFY (§4.2, Recommended order)

    private func identify(_ m: DecodedMessage) {
        let tape = m.tape
        guard let d = tape.member(of: tape.root, named: "d"), tape.kind(d) == .object,
              let clientNode = tape.member(of: d, named: "client_id"), tape.kind(clientNode) == .string,
              let appNode = tape.member(of: d, named: "application_id"), tape.kind(appNode) == .string
        else {
            fatal("payload has no data")
            return
        }
        // Lengths first, from the tape: nothing over a bound is copied.
        if tape.node(clientNode).stringLength > Self.maxIDLength {
            fatal("client_id: longer than \(Self.maxIDLength) bytes"); return
        }
        if tape.node(appNode).stringLength > Self.maxIDLength {
            fatal("application_id: longer than \(Self.maxIDLength) bytes"); return
        }
        if let failure = identifyFieldsOverLimits(d, in: tape) { fatal(failure); return }
        let clientID = tape.string(clientNode)
        let applicationID = tape.string(appNode)
        if !GatewaySession.isValidID(clientID) { fatal("client_id: must be a non-empty string without spaces"); return }
        if !GatewaySession.isValidID(applicationID) { fatal("application_id: must be a non-empty string without spaces"); return }

        // §4.3: a wrong password restricts, it never rejects — except that an
        // address over its failure budget is refused outright.
        let authNode = tape.member(of: d, named: "auth")
        let authGiven = authNode.map { tape.kind($0) != .null } ?? false
        let peerHost = connection.peer.host
        let now = gateway.loop.now
        var restricted: Bool
        if gateway.auth.isEnabled {
            if authGiven && gateway.auth.isBlocked(connection.peer, now: now) {
                gateway.logger.warning("identify refused: too many failed authentication attempts", metadata: ["peer": "\(peerHost)"])
                fatal("too many failed authentication attempts; try again later")
                return
            }
            if let authNode, tape.kind(authNode) == .string {
                restricted = !tape.withStringBytes(authNode) { gateway.auth.matches(Array($0)) }
            } else {
                restricted = true
            }
            if restricted && authGiven {
                gateway.auth.recordFailure(connection.peer, now: now)
                gateway.logger.info("identify with a wrong password; client restricted", metadata: ["peer": "\(peerHost)", "app": "\(applicationID)"])
            }
        } else {
            restricted = authGiven
        }

        // §4.4 duplicates and takeover.
        if let existing = gateway.store.find(application: applicationID, client: clientID) {
            let reconnect = tape.member(of: d, named: "reconnect").flatMap { tape.bool($0) } ?? false
            if reconnect && !restricted, let old = existing.session {
                old.replacedByNewerConnection()
            } else if reconnect && !restricted {
                gateway.deregister(existing)
            } else {
                fatal("\(clientID): already registered for app \(applicationID)")
                return
            }
        }

        // Initial metadata, validated before anything is registered.
        var initial: MetadataUpdate?
        if let metadataNode = tape.member(of: d, named: "metadata"), tape.kind(metadataNode) != .null {
            guard tape.kind(metadataNode) == .object else {
                fatal("initial metadata: invalid") { w in
                    w.beginObject(count: 1); w.key("metadata"); w.string("must be an object"); w.endObject()
                }
                return
            }
            // The budget is checked on the tape, before anything is converted.
            if let failure = gateway.metadataBudget.check(updateObject: metadataNode, in: tape) {
                metadataOverBudget(failure, identify: true)
                return
            }
            switch MetadataUpdate.validate(tape.value(metadataNode)) {
            case .success(let update):
                if let failure = gateway.metadataBudget.check(update, appliedTo: ClientMetadata(), strategy: .merge) {
                    metadataOverBudget(failure, identify: true)
                    return
                }
                initial = update
            case .failure(let failure):
                let info = failure.extraInfo
                fatal("initial metadata: invalid") { w in w.value(info) }
                return
            }
        }

        let ipNode = tape.member(of: d, named: "ip")
        let ip: String? = restricted ? nil : (ipNode.flatMap { tape.kind($0) == .string ? tape.string($0) : nil } ?? peerHost)
        let namespace = tape.member(of: d, named: "namespace").flatMap { tape.kind($0) == .string ? tape.string($0) : nil }
        let wantsUpdates = !restricted && (tape.member(of: d, named: "receive_client_updates").flatMap { tape.bool($0) } ?? false)
        var tags: [String] = []
        if !restricted, let tagsNode = tape.member(of: d, named: "tags"), tape.kind(tagsNode) == .array {
            for element in tape.elements(of: tagsNode) where tape.kind(element) == .string {
                tags.append(tape.string(element))
            }
        }

        var metadata = ClientMetadata()
        metadata.setReserved(lastHeartbeatTime: gateway.loop.nowMilliseconds, restricted: restricted,
                             encoding: encoding == .json ? "json" : "msgpack", ip: ip, namespace: namespace,
                             receiveClientUpdates: wantsUpdates)
        if let initial { metadata.apply(initial, strategy: .merge) }
        let record = ClientRecord(applicationID: applicationID, clientID: clientID, handle: gateway.store.makeHandle(),
                                  restricted: restricted, encoding: encoding, receivesClientUpdates: wantsUpdates,
                                  socketIP: ip, tags: tags, metadata: metadata, session: self)
        self.record = record
        socket.identifyAccepted()
        gateway.heartbeatDeadlines.arm(heartbeatDeadline)
        if let peers = gateway.peers, peers.mustAnnounce(applicationID) {
            // First client of this application on the node: peers learn of
            // it before READY (see Cluster.announceNewApplication); frames
            // the client sends meanwhile wait their turn.
            awaitingAnnouncement = true
            // Strong: a weak reference would give this session a side table
            // (every later retain and release of it slow); finishIdentify
            // checks whether the session was cleaned up meanwhile.
            peers.announceNewApplication(applicationID) { [self] in self.finishIdentify(record) }
        } else {
            finishIdentify(record)
        }
    }

    /// READY first, then registration and CLIENT_CONNECTED (which may
    /// include this client), then any frames that arrived meanwhile.
    private func finishIdentify(_ record: ClientRecord) {
        let wasWaiting = awaitingAnnouncement
        awaitingAnnouncement = false
        guard !isClosing, !cleanedUp else {
            if wasWaiting { gateway.peers?.withdrawIfUnused(record.applicationID) }
            return
        }
        if wasWaiting, gateway.store.find(application: record.applicationID, client: record.clientID) != nil {
            // Another connection registered the same ids while we waited.
            fatal("\(record.clientID): already registered for app \(record.applicationID)")
            gateway.peers?.withdrawIfUnused(record.applicationID)
            return
        }
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 2, t: nil, ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: 2)
        w.key("client_id"); w.string(record.clientID)
        w.key("restricted"); w.bool(record.restricted)
        w.endObject()
        w.endObject()
        send(w)
        gateway.register(record)
        let held = self.held
        self.held = []
        heldBytes = 0
        for (opcode, bytes) in held {
            bytes.withUnsafeBytes { received(opcode: opcode, payload: UnsafeRawBufferPointer(rebasing: $0[0..<(bytes.count - 64)])) }
        }
    }

    /// The identify fields other than the ids that have a length bound
    /// (`namespace`, `ip`, `tags`): the fatal error text, or nil.
    private func identifyFieldsOverLimits(_ d: Int, in tape: DocumentTape) -> String? {
        if let node = tape.member(of: d, named: "namespace"), tape.node(node).stringLength > Self.maxIDLength {
            return "namespace: longer than \(Self.maxIDLength) bytes"
        }
        if let node = tape.member(of: d, named: "ip"), tape.node(node).stringLength > Self.maxIPLength {
            return "ip: longer than \(Self.maxIPLength) bytes"
        }
        if let node = tape.member(of: d, named: "tags"), tape.kind(node) == .array {
            if tape.count(node) > Self.maxTags { return "tags: more than \(Self.maxTags) tags" }
            for element in tape.elements(of: node) where tape.node(element).stringLength > Self.maxTagLength {
                return "tags: a tag is longer than \(Self.maxTagLength) bytes"
            }
        }
        return nil
    }

    /// Metadata refused by its budget: op 8 on IDENTIFY (extra_info
    /// `{"metadata": text}`), op 3 `invalid metadata` on UPDATE_METADATA.
    private func metadataOverBudget(_ failure: MetadataBudgetFailure, identify: Bool) {
        let text = failure.text
        gateway.logger.info("metadata over budget; refused", metadata: [
            "peer": "\(connection.peer.description)", "reason": "\(text)", "identify": "\(identify)",
        ])
        if identify {
            fatal("initial metadata: invalid") { w in
                w.beginObject(count: 1); w.key("metadata"); w.string(text); w.endObject()
            }
        } else {
            invalid("invalid metadata") { w in w.string(text) }
        }
    }

    /// No HEARTBEAT for 1.5 × HEARTBEAT_INTERVAL (protocol.md §5.2, by timer).
    private func heartbeatExpired() {
        guard record != nil, !isClosing else { return }
        gateway.logger.info("heartbeat took too long; closing", metadata: ["peer": "\(connection.peer.description)"])
        fatal("heartbeat took too long")
    }

    /// Non-empty, no space, no ASCII control character (§4.2 Recommended).
    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && !id.utf8.contains { $0 <= 0x20 || $0 == 0x7F }
    }

    // MARK: HEARTBEAT (§5.1)

    private func heartbeat(_ record: ClientRecord) {
        gateway.store.touchHeartbeat(record, milliseconds: gateway.loop.nowMilliseconds)
        gateway.heartbeatDeadlines.arm(heartbeatDeadline)
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 6, t: nil, ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: 1)
        w.key("client_id"); w.string(record.clientID)
        w.endObject()
        w.endObject()
        send(w)
    }

    // MARK: DISPATCH (§8)

    /// The dispatch events this build handles.
    private enum Event { case updateMetadata, send, broadcast, queryNodes, queue, queueRequest, queueRequestCancel, queueAck, other }

    private func dispatch(_ m: DecodedMessage, record: ClientRecord) {
        let tNode = m.tape.member(of: m.tape.root, named: "t")
        let event: Event
        if let tNode, m.tape.kind(tNode) == .string {
            if m.tape.isString(tNode, equalTo: "UPDATE_METADATA") { event = .updateMetadata }
            else if m.tape.isString(tNode, equalTo: "SEND") { event = .send }
            else if m.tape.isString(tNode, equalTo: "BROADCAST") { event = .broadcast }
            else if m.tape.isString(tNode, equalTo: "QUERY_NODES") { event = .queryNodes }
            else if m.tape.isString(tNode, equalTo: "QUEUE") { event = .queue }
            else if m.tape.isString(tNode, equalTo: "QUEUE_REQUEST") { event = .queueRequest }
            else if m.tape.isString(tNode, equalTo: "QUEUE_REQUEST_CANCEL") { event = .queueRequestCancel }
            else if m.tape.isString(tNode, equalTo: "QUEUE_ACK") { event = .queueAck }
            else { event = .other }
        } else {
            event = .other
        }
        if record.restricted && event != .updateMetadata {
            // Only `error`, no extra_info (§4.3); a missing t renders as empty.
            let name = tNode.flatMap { m.tape.kind($0) == .string ? m.tape.string($0) : nil } ?? ""
            invalid("invalid dispatch type \(name) (are you restricted?)", extra: nil)
            return
        }
        let d = m.tape.member(of: m.tape.root, named: "d")
        switch event {
        case .updateMetadata:
            updateMetadata(d, in: m, record: record)
        case .send, .broadcast:
            route(m, d: d, broadcast: event == .broadcast)
        case .queryNodes:
            queryNodes(m, d: d)
        case .queue, .queueRequest, .queueRequestCancel, .queueAck:
            queueEvent(event, m, d: d, record: record)
        case .other:
            invalidDispatchPayload(m)
        }
    }

    /// op 3 `invalid dispatch payload` with the frame as received (§6.3).
    private func invalidDispatchPayload(_ m: DecodedMessage) {
        invalid("invalid dispatch payload") { w in self.writeFrameAsReceived(m, into: &w) }
    }

    /// `{"op": 4, "t": …, "ts": <client's ts or null>, "d": <client's d>}`,
    /// copied from the client's own bytes (sender and reply share an encoding).
    private func writeFrameAsReceived(_ m: DecodedMessage, into w: inout FrameWriter) {
        let tape = m.tape
        let root = tape.rootObject
        w.beginObject(count: 4)
        w.key("op"); w.int(4)
        w.key("t")
        if let root, let t = tape.member(of: root, named: "t") { w.tapeValue(t, in: m) } else { w.null() }
        w.key("ts")
        if let root, let ts = tape.member(of: root, named: "ts") { w.tapeValue(ts, in: m) } else { w.null() }
        w.key("d")
        if let root, let d = tape.member(of: root, named: "d") { w.tapeValue(d, in: m) } else { w.null() }
        w.endObject()
    }

    private func updateMetadata(_ d: Int?, in m: DecodedMessage, record: ClientRecord) {
        guard let d, m.tape.kind(d) == .object else {
            invalid("invalid metadata") { w in w.string("metadata update must be an object") }
            return
        }
        if let failure = gateway.metadataBudget.check(updateObject: d, in: m.tape) {
            metadataOverBudget(failure, identify: false)
            return
        }
        switch MetadataUpdate.validate(m.tape.value(d)) {
        case .success(let update):
            if let failure = gateway.enqueue(update, for: record) { metadataOverBudget(failure, identify: false) }
        case .failure(let failure):
            let info = failure.extraInfo
            invalid("invalid metadata") { w in w.value(info) }
        }
    }

    // MARK: Queues (protocol.md §8.5–8.9, queues.md)

    /// QUEUE, QUEUE_REQUEST, QUEUE_REQUEST_CANCEL, QUEUE_ACK: checked here
    /// (a bad or missing `queue`, `target`, `payload` or `id` is op 3
    /// `invalid dispatch payload`, a bad target `invalid query`), carried
    /// out by the queue service.
    private func queueEvent(_ event: Event, _ m: DecodedMessage, d: Int?, record: ClientRecord) {
        guard let queues = gateway.queues else {
            invalid("queues are not available on this node", extra: nil)
            return
        }
        guard let d, m.tape.kind(d) == .object, let nameNode = m.tape.member(of: d, named: "queue"),
              m.tape.kind(nameNode) == .string,
              (1...QueueName.maxLength).contains(Int(m.tape.node(nameNode).stringLength))
        else {
            invalidDispatchPayload(m)
            return
        }
        let name = m.tape.string(nameNode)
        switch event {
        case .queue:
            guard let targetNode = m.tape.member(of: d, named: "target"),
                  let payloadNode = m.tape.member(of: d, named: "payload")
            else {
                invalidDispatchPayload(m)
                return
            }
            guard let query = parseQuery(targetNode, in: m, context: "target") else { return }
            let nonce = m.tape.member(of: d, named: "nonce").map { UnsafeRawBufferPointer(rebasing: m.source[m.tape.span($0)]) }
            let message = RoutedMessage(event: "QUEUE", encoding: encoding, nonce: nonce,
                                        payload: UnsafeRawBufferPointer(rebasing: m.source[m.tape.span(payloadNode)]))
            let targetBytes = UnsafeRawBufferPointer(rebasing: m.source[m.tape.span(targetNode)])
            // The answers go through the record, not a closure holding this
            // session weakly: see `answerQueueOperation`.
            queues.enqueue(queue: name, target: query, targetBytes: targetBytes, message: message, from: record) {
                outcome in record.session?.answerQueueOperation(outcome, queue: name, confirms: true)
            }
            return
        case .queueRequest:
            queues.request(queue: name, by: record) { outcome in
                record.session?.answerQueueOperation(outcome, queue: name, confirms: false)
            }
        case .queueRequestCancel:
            queues.cancelRequest(queue: name, by: record)
        default:
            guard let idNode = m.tape.member(of: d, named: "id"), m.tape.kind(idNode) == .string else {
                invalidDispatchPayload(m)
                return
            }
            queues.acknowledge(queue: name, id: m.tape.string(idNode)) { outcome in
                record.session?.answerQueueOperation(outcome, queue: name, confirms: false)
            }
        }
    }

    /// A queue operation of this client finished, now or later (the store
    /// or the queue's node answered): `.done` is QUEUE_CONFIRM when it
    /// `confirms` (a QUEUE) and nothing otherwise, `.refused` is op 3.
    /// Reached through `ClientRecord.session`, which is nil once the
    /// connection is cleaned up: a `[weak self]` closure per operation gave
    /// every session a side table, so each retain and release of it (one
    /// per delivery) took Swift's slow path.
    func answerQueueOperation(_ outcome: QueueOutcome, queue name: String, confirms: Bool) {
        if case .refused = outcome {
            queueRefused(name, outcome)
            return
        }
        guard confirms else { return }
        var w = FrameWriter(encoding: encoding)
        w.beginFrame(op: 4, t: "QUEUE_CONFIRM", ts: gateway.loop.nowMilliseconds)
        w.beginObject(count: 1)
        w.key("queue"); w.string(name)
        w.endObject()
        w.endObject()
        send(w)
    }

    /// Answers a refused queue operation with op 3 (nothing for `.done`).
    private func queueRefused(_ name: String, _ outcome: QueueOutcome) {
        guard case .refused(let reason) = outcome else { return }
        gateway.logger.info("queue operation refused", metadata: ["queue": "\(LogText.escape(name))", "reason": "\(reason)"])
        // extra_info names the queue; not the frame as received, which
        // for a full queue would send a large payload straight back.
        invalid(reason) { w in
            w.beginObject(count: 1)
            w.key("queue"); w.string(name)
            w.endObject()
        }
    }

    /// Parses a query node; answers op 3 `invalid query` and returns nil when invalid.
    private func parseQuery(_ node: Int, in m: DecodedMessage, context: String) -> Query? {
        let gateway = self.gateway
        let bytes = UnsafeRawBufferPointer(rebasing: m.source[m.tape.span(node)])
        let tag: UInt8 = m.encoding == .json ? 0 : 1
        let result = gateway.queryCache.query(for: bytes, tag: tag) {
            guard m.tape.kind(node) == .unexpanded else { return Query.parse(m.tape.value(node), context: context) }
            // A target the decoder skipped as cached, yet not found now (a
            // repeated "target" key, or an evicted entry): decode its span.
            var t = DocumentTape()
            guard (try? JSONTapeDecoder.decode(bytes, into: &t)) != nil else {
                return .failure(QueryError(detail: "\(context): undecodable"))
            }
            return Query.parse(t.value(t.root), context: context)
        }
        switch result {
        case .success(let query): return query
        case .failure(let error):
            invalid("invalid query") { w in w.string(error.detail) }
            return nil
        }
    }

    /// SEND / BROADCAST (§8.2, §8.3): decoded here, routed by the router
    /// (which also counts it), answered here.
    ///
    /// Local recipients' frames are built straight from this frame's bytes;
    /// when peers are involved, the router copies the frame once (the read
    /// buffer is reused before the peers answer).
    private func route(_ m: DecodedMessage, d: Int?, broadcast: Bool) {
        let gateway = self.gateway
        guard let d, m.tape.kind(d) == .object,
              let targetNode = m.tape.member(of: d, named: "target"),
              let payloadNode = m.tape.member(of: d, named: "payload")
        else {
            invalidDispatchPayload(m)
            return
        }
        guard let query = parseQuery(targetNode, in: m, context: "target") else { return }
        let nonceNode = m.tape.member(of: d, named: "nonce")
        let event: StaticString = broadcast ? "BROADCAST" : "SEND"
        let nonceSpan = nonceNode.map { m.tape.span($0) }
        let payloadSpan = m.tape.span(payloadNode)
        let message = RoutedMessage(event: event, encoding: encoding,
                                    nonce: nonceSpan.map { UnsafeRawBufferPointer(rebasing: m.source[$0]) },
                                    payload: UnsafeRawBufferPointer(rebasing: m.source[payloadSpan]))
        let status = gateway.router.route(
            query, target: UnsafeRawBufferPointer(rebasing: m.source[m.tape.span(targetNode)]),
            purpose: broadcast ? .all : .one, message: message, origin: self,
            copy: { OwnedRoutedMessage(event: event, encoding: encoding, source: m.source, nonce: nonceSpan, payload: payloadSpan) },
            deliverHere: { candidates in deliverLocal(message, to: candidates) })
        if case .noRoute = status { invalid("no_route") { w in self.writeFrameAsReceived(m, into: &w) } }
    }

    /// The zero-copy local delivery: frames built from this frame's bytes,
    /// transcoded from them for the other encoding (as for a peer's
    /// message; the fuzz targets hold that this equals transcoding the
    /// tape). Not from the tape: reading the decoded frame inside the frame
    /// closure copied it (four reference counts per SEND).
    private func deliverLocal(_ message: RoutedMessage, to candidates: ArraySlice<Candidate>) {
        let gateway = self.gateway
        let ts = gateway.loop.nowMilliseconds
        let pool = gateway.loop.framePool
        gateway.deliverLocally(event: Metrics.Event(message.event), to: candidates) { encoding in
            DispatchFrame.make(message, for: encoding, ts: ts, scratch: &gateway.scratch, pool: pool)
        }
    }

    /// op 3 `no_route` for a message that waited for peers: the frame as
    /// received comes from the owned copy.
    func noRoute(_ owned: OwnedRoutedMessage) {
        // Cleaned up: the connection may be gone (routing holds the session
        // until the peers answered).
        guard !isClosing, !cleanedUp else { return }
        _ = owned.withSource { source in
            var tape = DocumentTape()
            do {
                try DocumentDecoder.decode(source, encoding: encoding, into: &tape)
            } catch {
                return
            }
            let m = DecodedMessage(tape: tape, source: source, encoding: encoding)
            invalid("no_route") { w in self.writeFrameAsReceived(m, into: &w) }
        }
    }

    /// QUERY_NODES (§8.4): the candidate descriptors, selector applied,
    /// from every visible node.
    private func queryNodes(_ m: DecodedMessage, d: Int?) {
        guard let d else {
            invalid("invalid query") { w in w.string("query: must be an object") }
            return
        }
        guard let query = parseQuery(d, in: m, context: "query") else { return }
        gateway.metrics.count(.queryNodes, .routed)
        let encoded = UnsafeRawBufferPointer(rebasing: m.source[m.tape.span(d)])
        // Strong, as for the announcement above: held until the peers
        // answered; a cleaned-up session's connection may be gone.
        gateway.router.resolve(query, encoded: encoded, encoding: encoding, purpose: .list) { [self] candidates in
            guard !self.isClosing, !self.cleanedUp else { return }
            var w = FrameWriter(encoding: self.encoding, capacity: 256 * max(candidates.count, 1))
            w.beginFrame(op: 4, t: "QUERY_NODES", ts: self.gateway.loop.nowMilliseconds)
            w.beginObject(count: 1)
            w.key("nodes")
            ClientDescriptor.writeList(candidates, into: &w)
            w.endObject()
            w.endObject()
            self.send(w)
        }
    }
}
