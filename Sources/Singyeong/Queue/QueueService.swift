/// The node's queues held in memory (QUEUE_STORE=memory, queues.md §7
/// "single node"): the operations the gateway forwards, the GC timer, the
/// bounds, and delivery to the consumers' sessions.
///
/// Bounds: a queue holds at most `maxMessages` messages and `maxBytes`
/// bytes (queued, unacknowledged and dead together: all of them are
/// memory), the node at most `maxTotalBytes`; past any of them QUEUE is
/// refused and stores nothing. A client waits on at most
/// `maxQueuesPerClient` queues. A queue with nothing held and nobody
/// waiting is forgotten, so the number of queues is bounded by those.
final class QueueService: QueueOperations, QueueAttemptContext {
    struct Limits {
        var ackTimeout: Int64 = 15_000
        var dlqTime: Int64 = 15_000
        var gcInterval: Int64 = 1_000
        var maxMessages = 100_000
        var maxBytes = 64 << 20
        var maxTotalBytes = 256 << 20
        var maxQueuesPerClient = 64
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
    private let router: Router
    private let loop: EventLoop
    private(set) var queues: [String: MessageQueue] = [:]
    private(set) var counters = Counters()
    /// Bytes held by every queue together.
    private(set) var totalBytes = 0
    private var rng = FastRandom()
    private var gcTimer: LoopTimer?

    init(router: Router, loop: EventLoop, limits: Limits) {
        self.router = router
        self.loop = loop
        self.limits = limits
        let timer = LoopTimer(loop: loop) { [unowned self] in self.collectGarbage() }
        let seconds = Double(limits.gcInterval) / 1000
        timer.start(after: seconds, repeating: seconds)
        gcTimer = timer
    }

    deinit { gcTimer?.stop() }

    private var now: Int64 { loop.nowMilliseconds }

    private func queue(_ name: String) -> MessageQueue {
        if let q = queues[name] { return q }
        let q = MessageQueue(name: name)
        queues[name] = q
        return q
    }

    private func forgetIfIdle(_ q: MessageQueue) {
        if q.isIdle { queues[q.name] = nil }
    }

    // MARK: QueueOperations

    func enqueue(queue name: String, target: Query, message: RoutedMessage, from producer: ClientRecord,
                 confirm: () -> Void) -> QueueOutcome {
        let cost = (message.nonce?.count ?? 0) + message.payload.count + InputBuffer.padding + 256
        let existing = queues[name]
        if let existing, existing.heldCount >= limits.maxMessages {
            return .refused("queue full: \(limits.maxMessages) messages (QUEUE_MAX_MESSAGES)")
        }
        if (existing?.heldBytes ?? 0) + cost > limits.maxBytes {
            return .refused("queue full: over \(limits.maxBytes) bytes (QUEUE_MAX_BYTES)")
        }
        if totalBytes + cost > limits.maxTotalBytes {
            return .refused("queues of this node full: over \(limits.maxTotalBytes) bytes (QUEUE_MAX_TOTAL_BYTES)")
        }
        let stored = QueuedMessage(id: newID(), target: target, content: OwnedRoutedMessage(copying: message),
                                   cost: cost, now: now)
        let q = queue(name)
        totalBytes += cost
        counters.confirmed &+= 1
        // QUEUE_CONFIRM before any delivery the attempt causes (§2.1).
        confirm()
        countDeadLettered(q) { q.enqueue(stored, now: now, context: self) }
        return .done
    }

    func request(queue name: String, by consumer: ClientRecord) -> QueueOutcome {
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

    func cancelRequest(queue name: String, by consumer: ClientRecord) -> QueueOutcome {
        unlist(name, from: consumer)
        if let q = queues[name] {
            q.removeWaiting(consumer)
            forgetIfIdle(q)
        }
        return .done
    }

    func acknowledge(queue name: String, id: String) -> QueueOutcome {
        guard let q = queues[name], let message = q.message(id: id) else { return .done }  // unknown ids are ignored
        let cost = message.cost
        if q.acknowledge(id: id) {
            totalBytes -= cost
            counters.acked &+= 1
        }
        forgetIfIdle(q)
        return .done
    }

    func metadataChanged(of record: ClientRecord) {
        for name in record.waitingQueues {
            queues[name]?.metadataChanged(of: record, now: now, context: self)
        }
    }

    func clientGone(_ record: ClientRecord) {
        let names = record.waitingQueues
        record.waitingQueues = []
        for name in names {
            guard let q = queues[name] else { continue }
            q.removeWaiting(record)
            forgetIfIdle(q)
        }
    }

    private func unlist(_ name: String, from consumer: ClientRecord) {
        if let i = consumer.waitingQueues.firstIndex(of: name) { consumer.waitingQueues.remove(at: i) }
    }

    // MARK: GC (§4)

    private func collectGarbage() {
        let now = self.now
        for q in Array(queues.values) where q.unackedCount > 0 || q.deadCount > 0 {
            let (died, _) = q.collectGarbage(now: now, ackTimeout: limits.ackTimeout, dlqTime: limits.dlqTime, context: self)
            counters.deadLettered &+= UInt64(died)
        }
    }

    /// Runs `body` and counts the messages it dead-lettered.
    private func countDeadLettered(_ q: MessageQueue, _ body: () -> Void) {
        let before = q.deadCount
        body()
        if q.deadCount > before { counters.deadLettered &+= UInt64(q.deadCount - before) }
    }

    // MARK: QueueAttemptContext

    func hasCandidate(for target: Query) -> Bool { router.hasLocalCandidates(target) }

    func anyClientMatchesOps(of target: Query) -> Bool { router.hasLocalMatch(target) }

    func choose(_ selector: Selector, among count: Int, value: (Int) -> Value?) -> Int? {
        selector.choose(among: count, value: value, using: &rng)
    }

    func delivered(_ message: QueuedMessage, from queue: MessageQueue, to consumer: ClientRecord) {
        // The queue leaves the consumer's list with its request (§3.2).
        unlist(queue.name, from: consumer)
        counters.delivered &+= 1
        message.deliveries += 1
        if message.deliveries > 1 { counters.redelivered &+= 1 }
        guard let session = consumer.session else { return }  // gone: redelivered after the timeouts
        message.content.withMessage { content in
            // d.payload = {"queue": name, "id": id, "payload": payload}, in
            // the producer's encoding (the session transcodes if needed).
            var inner = FrameWriter(encoding: content.encoding, capacity: content.payload.count + queue.name.utf8.count + 96)
            inner.beginObject(count: 3)
            inner.key("queue"); inner.string(queue.name)
            inner.key("id"); inner.string(message.id)
            inner.key("payload"); inner.raw(content.payload)
            inner.endObject()
            var bytes = inner.bytes
            let count = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: InputBuffer.padding))  // the JSON transcoder reads ahead
            bytes.withUnsafeBytes { raw in
                session.deliver(RoutedMessage(event: "QUEUE", encoding: content.encoding, nonce: content.nonce,
                                              payload: UnsafeRawBufferPointer(rebasing: raw[0..<count])))
            }
        }
    }

    // MARK: Ids

    /// A UUID v4 in its 36-character text form.
    private func newID() -> String {
        let high = rng.next(), low = rng.next()
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * i))
            bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * i))
        }
        bytes[6] = bytes[6] & 0x0F | 0x40  // version 4
        bytes[8] = bytes[8] & 0x3F | 0x80  // RFC 4122 variant
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { text.append(UInt8(ascii: "-")) }
            text.append(hex[Int(b >> 4)])
            text.append(hex[Int(b & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
