import Logging

/// The node's gateway: the client store, the router, authentication, the
/// metadata flush timer, and the events every session shares
/// (CLIENT_CONNECTED / CLIENT_DISCONNECTED).
///
/// One decoding tape and one scratch buffer serve every session: frames are
/// handled one at a time on the loop, so sharing them costs nothing and keeps
/// per-connection memory down.
final class Gateway {
    let loop: EventLoop
    let logger: Logger
    let store = ClientStore()
    let router: Router
    /// Compiled targets by their bytes (repeated targets skip compilation).
    let queryCache = QueryCache()
    let auth: AuthGuard
    let heartbeatInterval: Int
    /// Pre-encoded pieces shared by every session (HELLO).
    let frames: GatewayFrames
    let metadataStrategy: MetadataUpdateStrategy
    let metadataInterval: Int
    /// How much metadata one client may hold (METADATA_MAX_*).
    let metadataBudget: MetadataBudget
    /// HEARTBEAT_INTERVAL × 1.5 after the last heartbeat an identified
    /// client is dropped, by a timer (issue 10: the per-frame check of
    /// protocol.md §5.2 alone never fires for a client that sends nothing,
    /// or only WebSocket pings).
    let heartbeatDeadlines: DeadlineQueue
    /// Set when clustering: client events also go to every peer.
    /// The other nodes; set when clustering.
    weak var peers: PeerNetwork?
    /// The node's queues (QUEUE*, queues.md); nil only before the node
    /// wired them (frames then get op 3).
    var queues: QueueOperations?
    /// Decoding state reused by every frame. Only ever swapped out and back
    /// (`GatewaySession.received`), so exempt from dynamic exclusivity
    /// checking.
    @exclusivity(unchecked) var tape = DocumentTape()
    /// MAX_FRAME_VALUES: the most tape nodes one client frame may decode to.
    let maxFrameValues: Int
    /// Transcoding buffer for dispatch frames, passed inout once or twice
    /// per message: exempt from dynamic exclusivity checking (BENCHMARKS.md,
    /// "Checked release build"). No two accesses overlap: one thread, and
    /// its only users (`DispatchFrame.make` and the transcoders it calls)
    /// never reach back to the gateway.
    @exclusivity(unchecked) var scratch: [UInt8] = []
    private var dirty: [ClientRecord] = []
    private var flushTimer: LoopTimer?
    /// Counters for `GET /metrics`.
    let metrics = Metrics()

    init(loop: EventLoop, logger: Logger, settings: Settings) {
        self.loop = loop
        self.logger = logger
        router = Router(store: store, metrics: metrics)
        auth = AuthGuard(password: settings.auth, failuresPerMinute: settings.authFailuresPerMinute)
        heartbeatInterval = settings.heartbeatInterval
        frames = GatewayFrames(heartbeatInterval: settings.heartbeatInterval)
        metadataStrategy = settings.metadataUpdateStrategy == "replace" ? .replace : .merge
        metadataInterval = settings.metadataQueueInterval
        metadataBudget = MetadataBudget(maxKeys: settings.metadataMaxKeys, maxValueSize: settings.metadataMaxValueSize,
                                        maxTotalSize: settings.metadataMaxSize)
        maxFrameValues = settings.maxFrameValues
        heartbeatDeadlines = DeadlineQueue(loop: loop, duration: 1.5 * Double(settings.heartbeatInterval) / 1000)
        scratch.reserveCapacity(4096)
        if metadataInterval > 0 {
            flushTimer = LoopTimer(loop: loop) { [unowned self] in self.flushMetadata() }
        }
        router.local = self
    }

    // MARK: Registration

    /// Adds a client and tells every subscriber (protocol.md §8.10).
    func register(_ record: ClientRecord) {
        store.add(record)
        announce(event: "CLIENT_CONNECTED", application: record.applicationID)
    }

    /// Removes a client exactly once and tells the remaining subscribers
    /// (§5.5, §8.11). Pending metadata updates die with the record.
    func deregister(_ record: ClientRecord) {
        guard store.remove(record) else { return }
        record.projectedMetadata = nil
        queues?.clientGone(record)
        announce(event: "CLIENT_DISCONNECTED", application: record.applicationID)
    }

    /// CLIENT_CONNECTED / CLIENT_DISCONNECTED: to this node's subscribers
    /// and, through every peer, to the cluster's (cluster.md §4.4).
    private func announce(event: StaticString, application: String) {
        announceLocally(event: event, application: application)
        peers?.broadcastEvent(event, application: application)
    }

    /// The event with `{"app": id}` to this node's subscribers, one frame per
    /// encoding shared by all of them.
    func announceLocally(event: StaticString, application: String) {
        guard !store.subscribers.isEmpty else { return }
        let ts = loop.nowMilliseconds
        var frames: [OutboundBytes?] = [nil, nil]
        for subscriber in store.subscribers {
            guard let session = subscriber.session else { continue }
            let slot = subscriber.encoding == .json ? 0 : 1
            if frames[slot] == nil {
                var payload = FrameWriter(encoding: subscriber.encoding)
                payload.beginObject(count: 1)
                payload.key("app"); payload.string(application)
                payload.endObject()
                frames[slot] = payload.bytes.withUnsafeBytes {
                    DispatchFrame.make(event: event, encodedPayload: $0, for: subscriber.encoding, ts: ts, pool: loop.framePool)
                }
            }
            session.deliver(frames[slot]!)
        }
    }

    // MARK: Delivery

    /// Delivers a routed message to local clients: one frame per encoding,
    /// shared by all of them.
    func deliverLocally(_ message: RoutedMessage, to recipients: [ClientRecord]) {
        let ts = loop.nowMilliseconds
        deliverLocally(event: Metrics.Event(message.event), to: recipients) { encoding in
            DispatchFrame.make(message, for: encoding, ts: ts, scratch: &scratch, pool: loop.framePool)
        }
    }

    /// Delivers to the router's local candidates (all of them on this node).
    func deliverLocally(event: Metrics.Event, to candidates: ArraySlice<Candidate>, frame: (PayloadEncoding) -> OutboundBytes?) {
        let first = candidates.startIndex
        deliverEach(event: event, count: candidates.count, recipient: { candidates[first + $0].record }, frame: frame)
    }

    /// Delivers to local clients.
    func deliverLocally(event: Metrics.Event, to recipients: [ClientRecord], frame: (PayloadEncoding) -> OutboundBytes?) {
        deliverEach(event: event, count: recipients.count, recipient: { recipients[$0] }, frame: frame)
    }

    /// The one delivery loop: `frame` is asked at most once per encoding
    /// (JSON, MessagePack) and that frame is shared by every recipient using
    /// it. A nil frame (a payload that cannot be transcoded) is logged and
    /// those recipients skipped. Recipients by position, not a `Sequence`:
    /// a lazy `compactMap` over the candidates cost reference counting for
    /// its wrappers on every message.
    @inline(__always)
    private func deliverEach(event: Metrics.Event, count: Int, recipient: (Int) -> ClientRecord?,
                             frame: (PayloadEncoding) -> OutboundBytes?) {
        var json: OutboundBytes??
        var msgpack: OutboundBytes??
        var delivered = 0
        for i in 0..<count {
            guard let recipient = recipient(i), let session = recipient.session else { continue }
            let built: OutboundBytes?
            if recipient.encoding == .json {
                if json == nil { json = .some(frame(.json)) }
                built = json!
            } else {
                if msgpack == nil { msgpack = .some(frame(.msgpack)) }
                built = msgpack!
            }
            guard let built else {
                logger.warning("could not transcode a routed message; dropped")
                continue
            }
            session.deliver(built)
            delivered += 1
        }
        metrics.count(event, .delivered, delivered)
    }

    // MARK: Metadata batching (protocol.md §7.4)

    /// Queues an update; applied at the next flush (or now when the interval
    /// is 0). Refused, with nothing changed, when the metadata the client
    /// would then hold is over its budget. O(size of the update), plus one
    /// copy of the client's metadata per flush interval.
    func enqueue(_ update: MetadataUpdate, for record: ClientRecord) -> MetadataBudgetFailure? {
        if let failure = metadataBudget.check(update, appliedTo: record.projectedMetadata ?? record.metadata,
                                              strategy: metadataStrategy) {
            return failure
        }
        if metadataInterval == 0 {
            store.updateMetadata(of: record) { $0.apply(update, strategy: metadataStrategy) }
            queues?.metadataChanged(of: record)
            return nil
        }
        var projected = record.projectedMetadata ?? record.metadata
        record.projectedMetadata = nil  // unique reference: apply in place
        projected.apply(update, strategy: metadataStrategy)
        record.projectedMetadata = projected
        if !record.isQueuedForFlush {
            record.isQueuedForFlush = true
            dirty.append(record)
        }
        if let flushTimer, !flushTimer.isActive {
            flushTimer.start(after: Double(metadataInterval) / 1000)
        }
        return nil
    }

    /// Applies every pending update: the projected metadata becomes the
    /// stored one (the end state equals applying them one by one, for both
    /// strategies). Server-set keys changed meanwhile (the heartbeat time)
    /// are carried over.
    private func flushMetadata() {
        let batch = dirty
        dirty.removeAll(keepingCapacity: true)
        for record in batch {
            record.isQueuedForFlush = false
            guard record.isRegistered, var projected = record.projectedMetadata else { continue }
            record.projectedMetadata = nil
            store.updateMetadata(of: record) { metadata in
                projected.copyReserved(from: metadata)
                metadata = projected
            }
            queues?.metadataChanged(of: record)
        }
    }

}
