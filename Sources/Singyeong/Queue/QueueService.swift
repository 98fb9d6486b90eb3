import Logging

/// The node's queues: the operations the gateway forwards, the GC timer, the
/// bounds, and delivery to the consumers' sessions, over an in-memory mirror
/// of each queue kept in a `QueueStore` (memory, or Redis: see there).
///
/// With a store that waits (Redis), a queue is used only once its state was
/// read (`MessageQueue.isLoaded`): until then requests wait in its `waiting`
/// list and ACKs wait in `pendingAcks`; a QUEUE is stored first and applied
/// to the mirror when the store confirms it (the store answers in order, so
/// a queue still loading then reads the new message itself). When the store
/// loses a queue (a write failed, the lease went) the mirror's messages are
/// dropped and read again; waiting clients stay.
///
/// Bounds: a queue holds at most `maxMessages` messages and `maxBytes`
/// bytes (queued, unacknowledged and dead together: all of them are
/// memory), the node at most `maxTotalBytes` (stores in flight included);
/// past any of them QUEUE is refused and stores nothing. A client waits on
/// at most `maxQueuesPerClient` queues, and at most `maxPendingAcks` ACKs
/// wait for a queue to load. A queue with nothing held and nobody waiting is
/// forgotten (with a store, at the next GC pass, so a busy queue that is
/// empty for a moment keeps its lease), so the number of queues is bounded
/// by those.
final class QueueService: QueueOperations, QueueAttemptContext, QueueStoreDelegate {
    struct Limits {
        var ackTimeout: Int64 = 15_000
        var dlqTime: Int64 = 15_000
        var gcInterval: Int64 = 1_000
        var maxMessages = 100_000
        var maxTargets = 10_000
        var maxBytes = 64 << 20
        var maxTotalBytes = 256 << 20
        var maxQueuesPerClient = 64
        var maxPendingAcks = 10_000
        /// Other nodes' consumers that may wait here at once (a buggy peer
        /// cannot grow them without bound; idle ones go after 3 GC intervals).
        var maxShadows = 100_000
        /// Queue holders remembered (forgotten all at once past it, then
        /// learned again from the store or a peer's reply).
        var maxRedirects = 10_000
    }

    /// Totals since start (/metrics, issue 14 point 5).
    struct Counters {
        var confirmed: UInt64 = 0
        var delivered: UInt64 = 0
        var redelivered: UInt64 = 0
        var acked: UInt64 = 0
        var deadLettered: UInt64 = 0
    }

    let limits: Limits
    let store: QueueStore
    /// Whether the store outlives the process (changes when idle queues are
    /// forgotten, and what an unknown ACK means).
    let isDurable: Bool
    let router: Router
    let loop: EventLoop
    let queryCache: QueryCache
    var logger: Logger
    private(set) var queues: [String: MessageQueue] = [:]

    // Clustered (see QueueService+Cluster.swift).
    /// The other nodes; nil on a single node.
    weak var peers: QueuePeers?
    /// Queues known to be held by another node (learned from the store or a
    /// peer's reply), by name.
    var redirects: [String: String] = [:]
    /// This node's consumers waiting on queues held elsewhere: queue →
    /// consumer handle → the request.
    var remoteWaits: [String: [UInt64: RemoteWait]] = [:]
    /// Stand-ins for other nodes' consumers waiting on queues held here.
    var shadows: [ShadowKey: Shadow] = [:]
    var shadowOfRecord: [ObjectIdentifier: Shadow] = [:]
    /// Numbers this node's queue requests (a repeat keeps its number).
    var nextSequence: UInt64 = 0
    /// ACKs that wait for their queue to load, by queue.
    private var pendingAcks: [String: [String]] = [:]
    private var pendingAckCount = 0
    private(set) var counters = Counters()
    /// Bytes held by every queue together, stores in flight included.
    private(set) var totalBytes = 0
    private var rng = FastRandom()
    private var gcTimer: LoopTimer?

    init(router: Router, loop: EventLoop, queryCache: QueryCache, logger: Logger, limits: Limits,
         store: QueueStore = MemoryQueueStore(), durable: Bool = false) {
        self.router = router
        self.loop = loop
        self.queryCache = queryCache
        self.logger = logger
        self.limits = limits
        self.store = store
        isDurable = durable
        store.delegate = self
        let timer = LoopTimer(loop: loop) { [unowned self] in self.collectGarbage() }
        let seconds = Double(limits.gcInterval) / 1000
        timer.start(after: seconds, repeating: seconds)
        gcTimer = timer
        store.start()
    }

    deinit { gcTimer?.stop() }

    /// Graceful shutdown: the store gives up its leases, then `completion`.
    func stop(completion: @escaping () -> Void) {
        gcTimer?.stop()
        store.stop(completion: completion)
    }

    var now: Int64 { loop.nowMilliseconds }

    func queue(_ name: String) -> MessageQueue {
        if let q = queues[name] { return q }
        let q = MessageQueue(name: name, loaded: false)
        queues[name] = q
        acquire(q)
        return q
    }

    /// Reads `q` from the store (once at a time), unless it is loaded.
    private func acquire(_ q: MessageQueue) {
        guard !q.isLoaded, !q.isLoading, store.isAvailable else { return }
        q.isLoading = true
        // Strong captures: the service lives as long as the node, and a weak
        // reference would give it (and the queue) a side table, which makes
        // every retain and release of them take Swift's slow path.
        store.acquire(q.name) { [self] result in
            q.isLoading = false
            guard self.queues[q.name] === q else { return }
            // One log line per new reason, not one per retry.
            let failure: String
            switch result {
            case .success(let snapshot):
                q.loadFailure = nil
                self.load(q, from: snapshot)
                return
            case .ownedElsewhere(let owner):
                if self.heldElsewhere(q, by: owner) { return }
                failure = "held by node \(owner)"
            case .failure(let reason): failure = reason
            }
            if failure != q.loadFailure {
                q.loadFailure = failure
                self.logger.warning("could not take the queue; retrying every GC interval",
                                    metadata: ["queue": "\(LogText.escape(q.name))", "reason": "\(LogText.escape(failure))"])
            }
        }
    }

    private func load(_ q: MessageQueue, from snapshot: QueueSnapshot) {
        let now = self.now
        var targets: [TargetKey: (target: Query, key: TargetKey)] = [:]
        func messages(_ entries: [QueueSnapshot.Entry]) -> [QueuedMessage] {
            entries.compactMap { entry in
                guard let message = restore(entry, now: now, targets: &targets) else {
                    logger.error("stored queue message is unreadable; left in the store", metadata: ["queue": "\(LogText.escape(q.name))", "id": "\(LogText.escape(entry.id))"])
                    return nil
                }
                totalBytes += message.cost
                return message
            }
        }
        let queued = messages(snapshot.queued), unacked = messages(snapshot.unacked), dead = messages(snapshot.dead)
        q.load(queued: queued, unacked: unacked, dead: dead, now: now, context: self)
        if !snapshot.queued.isEmpty || !snapshot.unacked.isEmpty || !snapshot.dead.isEmpty {
            logger.info("queue loaded", metadata: ["queue": "\(LogText.escape(q.name))", "queued": "\(queued.count)",
                                                   "unacked": "\(unacked.count)", "dead": "\(dead.count)"])
        }
        if let acks = pendingAcks.removeValue(forKey: q.name) {
            pendingAckCount -= acks.count
            for id in acks { acknowledgeHere(queue: q.name, id: id) { _ in } }
        }
    }

    /// A message read from the store, its target compiled again (through the
    /// query cache, so messages with one target share one `Query`).
    private func restore(_ entry: QueueSnapshot.Entry, now: Int64,
                         targets: inout [TargetKey: (target: Query, key: TargetKey)]) -> QueuedMessage? {
        let stored = entry.message
        var tape = DocumentTape()
        let decoded: Bool
        switch stored.encoding {
        case .json: decoded = (try? JSONTapeDecoder.decode(copying: stored.target, into: &tape)) != nil
        case .msgpack: decoded = (try? MessagePackTapeDecoder.decode(copying: stored.target, into: &tape)) != nil
        }
        guard decoded else { return nil }
        var padded = stored.target
        padded.append(contentsOf: repeatElement(0, count: InputBuffer.padding))
        let result = padded.withUnsafeBytes { raw in
            queryCache.query(for: UnsafeRawBufferPointer(rebasing: raw[0..<stored.target.count]), tag: stored.encoding == .json ? 0 : 1) {
                Query.parse(tape.value(tape.root), context: "target")
            }
        }
        guard case .success(let target) = result else { return nil }
        let content = stored.nonce.withOptionalBytes { nonce in
            stored.payload.withUnsafeBytes { payload in
                OwnedRoutedMessage(copying: RoutedMessage(event: "QUEUE", encoding: stored.encoding, nonce: nonce, payload: payload))
            }
        }
        let key = TargetKey(encoding: stored.encoding, target: stored.target)
        let shared = targets[key] ?? (target, key)
        targets[key] = shared
        let message = QueuedMessage(id: entry.id, target: shared.target, targetKey: shared.key, content: content,
                                    cost: Self.cost(nonce: stored.nonce?.count ?? 0, payload: stored.payload.count,
                                                    target: stored.target.count),
                                    now: now - entry.age)
        message.deliveries = entry.deliveries
        return message
    }

    /// Bytes a message is counted for: what it holds, plus bookkeeping.
    private static func cost(nonce: Int, payload: Int, target: Int) -> Int {
        nonce + payload + target + InputBuffer.padding + 256
    }

    private func forgetIfIdle(_ q: MessageQueue) {
        guard !isDurable else { return }  // at the next GC pass
        if q.isIdle { queues[q.name] = nil }
    }

    // MARK: QueueStoreDelegate

    func storeLost(_ name: String, reason: String) {
        guard let q = queues[name], q.isLoaded else { return }
        logger.warning("queue store lost the queue; reading it again", metadata: ["queue": "\(LogText.escape(name))", "reason": "\(reason)"])
        totalBytes -= q.dropMessages()
        acquire(q)
    }

    func storeAvailable() {
        for q in queues.values { acquire(q) }
        // In a cluster, a queue is taken on demand by the node its
        // operations go to; on one node, every stored queue is served again.
        guard peers == nil else { return }
        store.knownQueues { [self] names in
            for name in names where (1...QueueName.maxLength).contains(name.utf8.count) { _ = self.queue(name) }
        }
    }

    // MARK: QueueOperations

    /// QUEUE on a queue served here (from a local producer or a peer's).
    func enqueueHere(queue name: String, target: Query, targetBytes: UnsafeRawBufferPointer, message: RoutedMessage,
                     answer: @escaping (QueueOutcome) -> Void) {
        let cost = Self.cost(nonce: message.nonce?.count ?? 0, payload: message.payload.count, target: targetBytes.count)
        let existing = queues[name]
        if let existing, existing.heldCount >= limits.maxMessages {
            return answer(.refused("queue full: \(limits.maxMessages) messages (QUEUE_MAX_MESSAGES)"))
        }
        let targetKey = TargetKey(encoding: message.encoding, target: targetBytes)
        let held = existing?.heldTarget(key: targetKey)
        if let existing, held == nil, existing.targetCount >= limits.maxTargets {
            return answer(.refused("queue full: messages for \(limits.maxTargets) distinct targets (QUEUE_MAX_TARGETS)"))
        }
        if (existing?.heldBytes ?? 0) + cost > limits.maxBytes {
            return answer(.refused("queue full: over \(limits.maxBytes) bytes (QUEUE_MAX_BYTES)"))
        }
        if totalBytes + cost > limits.maxTotalBytes {
            return answer(.refused("queues of this node full: over \(limits.maxTotalBytes) bytes (QUEUE_MAX_TOTAL_BYTES)"))
        }
        guard store.isAvailable else {
            return answer(.refused("queue storage unavailable (Redis): nothing stored"))
        }
        let q = queue(name)
        let stored = QueuedMessage(id: newID(), target: held?.target ?? target, targetKey: held?.key ?? targetKey,
                                   content: OwnedRoutedMessage(copying: message), cost: cost, now: now)
        totalBytes += cost
        let parts = StoredQueueMessage.Parts(encoding: message.encoding, nonce: message.nonce, target: targetBytes,
                                             payload: message.payload)
        store.add(parts, id: stored.id, to: name) { [self] failure in
            if let failure {
                self.totalBytes -= cost
                answer(.refused("queue storage failed (\(failure)): nothing stored"))
                return
            }
            self.counters.confirmed &+= 1
            // QUEUE_CONFIRM before any delivery the attempt causes (§2.1).
            answer(.done)
            if self.queues[name] === q, q.isLoaded {
                stored.since = self.now
                self.countDeadLettered(q) { q.enqueue(stored, now: self.now, context: self) }
            } else {
                // Loading: the acquire (sent after this store) reads it.
                self.totalBytes -= cost
            }
        }
    }

    /// QUEUE_REQUEST on a queue served here (`consumer` may be a shadow).
    func requestHere(queue name: String, by consumer: ClientRecord) -> QueueOutcome {
        let listed = consumer.waitingQueues.contains(name)
        if !listed && consumer.waitingQueues.count >= limits.maxQueuesPerClient {
            return .refused("waiting on too many queues: \(limits.maxQueuesPerClient)")
        }
        let q = queue(name)
        if !listed { consumer.waitingQueues.append(name) }
        countDeadLettered(q) { q.request(by: consumer, now: now, context: self) }
        forgetIfIdle(q)
        return .done
    }

    func cancelHere(queue name: String, by consumer: ClientRecord) {
        unlist(name, from: consumer)
        if let q = queues[name] {
            q.removeWaiting(consumer)
            forgetIfIdle(q)
        }
    }

    /// QUEUE_ACK on a queue served here.
    func acknowledgeHere(queue name: String, id: String, answer: (QueueOutcome) -> Void) {
        if isDurable {
            // The message may be in the store only (a queue not read yet).
            let q = queue(name)
            if !q.isLoaded {
                guard store.isAvailable || q.isLoading else {
                    return answer(.refused("queue storage unavailable (Redis): the ACK was not recorded; the message will be delivered again"))
                }
                guard pendingAckCount < limits.maxPendingAcks else {
                    return answer(.refused("too many ACKs waiting for queues to load: \(limits.maxPendingAcks)"))
                }
                pendingAcks[name, default: []].append(id)
                pendingAckCount += 1
                return answer(.done)
            }
        }
        guard let q = queues[name], let message = q.message(id: id) else { return answer(.done) }  // unknown ids are ignored
        let cost = message.cost, place = message.state, delivered = message.deliveries > 0
        if q.acknowledge(id: id) {
            totalBytes -= cost
            counters.acked &+= 1
            store.record(.acknowledged, id: id, from: place, delivered: delivered, in: name)
        }
        forgetIfIdle(q)
        answer(.done)
    }

    func metadataChanged(of record: ClientRecord) {
        for name in record.waitingQueues {
            queues[name]?.metadataChanged(of: record, now: now, context: self)
        }
        metadataChangedRemotely(of: record)
    }

    func clientGone(_ record: ClientRecord) {
        clientGoneRemotely(record)
        let names = record.waitingQueues
        record.waitingQueues = []
        for name in names {
            guard let q = queues[name] else { continue }
            q.removeWaiting(record)
            forgetIfIdle(q)
        }
    }

    func unlist(_ name: String, from consumer: ClientRecord) {
        if let i = consumer.waitingQueues.firstIndex(of: name) { consumer.waitingQueues.remove(at: i) }
    }

    // MARK: GC (§4)

    private func collectGarbage() {
        let now = self.now
        for q in Array(queues.values) {
            if !q.isLoaded {
                acquire(q)  // owned elsewhere or failed before: try again
                continue
            }
            if q.unackedCount > 0 || q.deadCount > 0 {
                let (died, _) = q.collectGarbage(now: now, ackTimeout: limits.ackTimeout, dlqTime: limits.dlqTime, context: self)
                counters.deadLettered &+= UInt64(died)
            }
            if isDurable && q.isIdle && pendingAcks[q.name] == nil {
                queues[q.name] = nil
                store.release(q.name)
            }
        }
        refreshRemote()
    }

    /// Forgets queue `name` here (its state is elsewhere now); returns the
    /// ACKs that were waiting for it to load.
    func forget(_ name: String) -> [String] {
        guard let q = queues.removeValue(forKey: name) else { return [] }
        totalBytes -= q.dropMessages()
        let acks = pendingAcks.removeValue(forKey: name) ?? []
        pendingAckCount -= acks.count
        return acks
    }

    /// Runs `body` and counts the messages it dead-lettered.
    private func countDeadLettered(_ q: MessageQueue, _ body: () -> Void) {
        let before = q.deadCount
        body()
        if q.deadCount > before { counters.deadLettered &+= UInt64(q.deadCount - before) }
    }

    // MARK: QueueAttemptContext

    /// Here, or (in a cluster) possibly on a peer that has clients of the
    /// target's application: a message is dead-lettered only when no node
    /// could hold a candidate (conservative: no false dead letters).
    func hasCandidate(for target: Query) -> Bool {
        router.hasLocalCandidates(target) || (peers?.mayHaveClients(of: target.application) ?? false)
    }

    /// Here, or among the other nodes' consumers waiting here (the clients
    /// of other nodes this node knows).
    func anyClientMatchesOps(of target: Query) -> Bool {
        router.hasLocalMatch(target)
            || shadows.values.contains { target.matches(application: $0.record.applicationID, metadata: $0.record.metadata) }
    }

    func choose(_ selector: Selector, among count: Int, value: (Int) -> Value?) -> Int? {
        selector.choose(among: count, value: value, using: &rng)
    }

    func delivered(_ message: QueuedMessage, from queue: MessageQueue, to consumer: ClientRecord) {
        // The queue leaves the consumer's list with its request (§3.2).
        unlist(queue.name, from: consumer)
        counters.delivered &+= 1
        store.record(.delivered, id: message.id, from: .queued, delivered: message.deliveries > 0, in: queue.name)
        message.deliveries += 1
        if message.deliveries > 1 { counters.redelivered &+= 1 }
        if let shadow = shadowOfRecord[ObjectIdentifier(consumer)] {
            deliverRemotely(message, from: queue, to: shadow)
            return
        }
        guard let session = consumer.session else { return }  // gone: redelivered after the timeouts
        message.content.withMessage { content in
            deliver(queue: queue.name, id: message.id, encoding: content.encoding, nonce: content.nonce,
                    payload: content.payload, to: session)
        }
    }

    /// Sends a QUEUE dispatch: d.payload = {"queue": name, "id": id,
    /// "payload": payload}, in the producer's encoding (the session
    /// transcodes if needed).
    func deliver(queue name: String, id: String, encoding: PayloadEncoding, nonce: UnsafeRawBufferPointer?,
                 payload: UnsafeRawBufferPointer, to session: ClientSession) {
        var inner = FrameWriter(encoding: encoding, capacity: payload.count + name.utf8.count + 96)
        inner.beginObject(count: 3)
        inner.key("queue"); inner.string(name)
        inner.key("id"); inner.string(id)
        inner.key("payload"); inner.raw(payload)
        inner.endObject()
        var bytes = inner.bytes
        let count = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: InputBuffer.padding))  // the JSON transcoder reads ahead
        bytes.withUnsafeBytes { raw in
            session.deliver(RoutedMessage(event: "QUEUE", encoding: encoding, nonce: nonce,
                                          payload: UnsafeRawBufferPointer(rebasing: raw[0..<count])))
        }
    }

    func deadLettered(_ message: QueuedMessage, from place: QueuedMessage.State, in queue: MessageQueue) {
        store.record(.deadLettered, id: message.id, from: place, delivered: message.deliveries > 0, in: queue.name)
    }

    func requeued(_ message: QueuedMessage, in queue: MessageQueue) {
        store.record(.requeued, id: message.id, from: .dead, delivered: message.deliveries > 0, in: queue.name)
    }

    // MARK: Ids

    /// A UUID v4 in its 36-character text form.
    private func newID() -> String {
        let high = rng.next(), low = rng.next()
        // Written straight into the string's storage: one allocation per
        // message (the String), where byte arrays cost four.
        return String(unsafeUninitializedCapacity: 36) { text in
            var at = 0
            for i in 0..<16 {
                if i == 4 || i == 6 || i == 8 || i == 10 { text[at] = UInt8(ascii: "-"); at += 1 }
                var b = UInt8(truncatingIfNeeded: (i < 8 ? high : low) >> (56 - 8 * (i % 8)))
                if i == 6 { b = b & 0x0F | 0x40 }  // version 4
                if i == 8 { b = b & 0x3F | 0x80 }  // RFC 4122 variant
                text[at] = QueueService.hexDigits[Int(b >> 4)]
                text[at + 1] = QueueService.hexDigits[Int(b & 0x0F)]
                at += 2
            }
            return at
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
