/// The state of one queue (queues.md §1) and the Recommended dispatch
/// attempt (§3.2) and GC pass (§4) over it, in memory.
///
/// **Attempts are incremental.** The queue keeps one invariant: after every
/// operation no queued message has a candidate among the waiting clients.
/// So the spec's attempt ("deliver the oldest deliverable message, repeat")
/// only needs to look at what an operation changed: a new or requeued
/// message is checked against the waiting clients (oldest request first), a
/// new request or a waiting client's new metadata against the queued
/// messages (oldest first). Same deliveries as the full loop, at O(waiting)
/// or O(messages) per operation instead of O(messages × waiting) per
/// delivery. (One corner stays outside the invariant: an `optional` target
/// whose ops matched a client that then left or changed, while a waiting
/// client passes its base filter only. Such a message is offered again at
/// the next GC requeue or request, not at the moment that client changed.)
///
/// Lists hold messages lazily: a delivered, dead-lettered or acknowledged
/// message leaves a stale entry that is skipped (its `state`/`since`/`order`
/// no longer match) and compacted away, so every move is O(1) amortized.
///
/// **Requests cost O(distinct targets), not O(messages).** Messages are also
/// grouped by target (messages with the same target bytes share one
/// compiled `Query`, through the query cache): a new request evaluates each
/// group's target once and takes the oldest queued message of the groups it
/// matches. The service bounds the number of groups (QUEUE_MAX_TARGETS), so
/// a client that cancels and requests again in a loop costs a bounded amount
/// per frame however many messages wait.
final class MessageQueue {
    let name: String
    /// A queued message as listed: stale once the message moved on (its
    /// `order` changes each time it is queued again).
    private struct Entry {
        let message: QueuedMessage
        let order: UInt64
        var isLive: Bool { message.state == .queued && message.order == order }
    }

    /// The messages held (queued, unacked or dead) with one target, and
    /// the queued ones among them in queue order (stale entries skipped).
    private final class TargetGroup {
        let target: Query
        let key: TargetKey
        var queued: [Entry] = []
        var head = 0
        var held = 0
        init(target: Query, key: TargetKey) {
            self.target = target
            self.key = key
        }

        /// The oldest queued message of the group, dropping stale entries.
        func liveHead() -> Entry? {
            while head < queued.count {
                if queued[head].isLive { return queued[head] }
                head += 1
            }
            if head > 0 {
                queued.removeAll(keepingCapacity: true)
                head = 0
            }
            return nil
        }
    }

    /// Queued messages, oldest first, from `head` (stale entries skipped).
    private var queued: [Entry] = []
    private var head = 0
    private var nextOrder: UInt64 = 0
    /// By target key (`QueuedMessage.targetKey`).
    private var groups: [TargetKey: TargetGroup] = [:]
    /// Delivered messages in delivery order, with their delivery time.
    private var unackedList: [(message: QueuedMessage, since: Int64)] = []
    private var unackedHead = 0
    /// Dead messages in the order they died, with that time.
    private var deadList: [(message: QueuedMessage, since: Int64)] = []
    private var deadHead = 0
    /// Every message not yet acknowledged, by id (QUEUE_ACK).
    private var byID: [String: QueuedMessage] = [:]
    /// Clients waiting for one message each, oldest request first.
    private(set) var waiting: [ClientRecord] = []

    /// The mirror holds the store's state (memory mode: always). While not
    /// loaded it holds no messages, only `waiting`, and makes no attempts.
    var isLoaded: Bool
    /// An acquire of this queue is on its way to the store.
    var isLoading = false
    /// Why the last acquire failed (logged once per new reason).
    var loadFailure: String?

    private(set) var queuedCount = 0
    private(set) var unackedCount = 0
    private(set) var deadCount = 0
    /// Bytes of every message held (queued, unacked or dead).
    private(set) var heldBytes = 0

    /// `loaded: false` for a queue whose state is still to be read from the store.
    init(name: String, loaded: Bool = true) {
        self.name = name
        isLoaded = loaded
    }

    var heldCount: Int { queuedCount + unackedCount + deadCount }
    /// Distinct targets among the messages held.
    var targetCount: Int { groups.count }
    /// The compiled target and the key array already held for target key
    /// `key`, if a message held has it (new messages share them).
    func heldTarget(key: TargetKey) -> (target: Query, key: TargetKey)? {
        groups[key].map { ($0.target, $0.key) }
    }
    /// Nothing held and nobody waiting: the queue may be forgotten.
    var isIdle: Bool { heldCount == 0 && waiting.isEmpty }

    /// Queued time of the oldest queued message (loop ms), if any.
    var oldestQueuedSince: Int64? {
        var i = head
        while i < queued.count {
            if queued[i].isLive { return queued[i].message.since }
            i += 1
        }
        return nil
    }

    /// Queued messages, oldest first (visibility and tests).
    var queuedMessages: [QueuedMessage] { queued[head...].filter(\.isLive).map(\.message) }
    func message(id: String) -> QueuedMessage? { byID[id] }

    // MARK: Loading

    /// Takes the state read from the store (each place oldest first, with
    /// the loop time its messages got there), then a deliver-only attempt.
    func load(queued: [QueuedMessage], unacked: [QueuedMessage], dead: [QueuedMessage], now: Int64,
              context: QueueAttemptContext) {
        for message in queued {
            hold(message)
            append(message, now: message.since)
        }
        for message in unacked {
            hold(message)
            message.state = .unacked
            unackedCount += 1
            unackedList.append((message, message.since))
        }
        for message in dead {
            hold(message)
            message.state = .dead
            deadCount += 1
            deadList.append((message, message.since))
        }
        isLoaded = true
        offer(queued, now: now, context: context)
    }

    /// Forgets every message (the store can no longer vouch for them) but
    /// keeps `waiting`; returns the bytes they held.
    func dropMessages() -> Int {
        for message in byID.values { message.state = .done }
        let bytes = heldBytes
        byID = [:]
        queued = []; head = 0
        groups = [:]
        unackedList = []; unackedHead = 0
        deadList = []; deadHead = 0
        queuedCount = 0; unackedCount = 0; deadCount = 0; heldBytes = 0
        isLoaded = false
        return bytes
    }

    // MARK: Operations

    /// QUEUE: appends `message`, then the full attempt (deliver, dead-letter).
    func enqueue(_ message: QueuedMessage, now: Int64, context: QueueAttemptContext) {
        hold(message)
        append(message, now: now)
        offer([message], now: now, context: context)
        deadLetterUnroutableHead(now: now, context: context)
    }

    /// QUEUE_REQUEST: waits (a repeated request keeps its place); false when
    /// the client was already waiting. Then the full attempt.
    @discardableResult
    func request(by consumer: ClientRecord, now: Int64, context: QueueAttemptContext) -> Bool {
        guard !isWaiting(consumer) else {
            if isLoaded { deadLetterUnroutableHead(now: now, context: context) }
            return false
        }
        waiting.append(consumer)
        guard isLoaded else { return true }
        offerMessages(to: consumer, now: now, context: context)
        deadLetterUnroutableHead(now: now, context: context)
        return true
    }

    /// A waiting client's metadata changed: a deliver-only attempt for it.
    func metadataChanged(of consumer: ClientRecord, now: Int64, context: QueueAttemptContext) {
        guard isLoaded, isWaiting(consumer) else { return }
        offerMessages(to: consumer, now: now, context: context)
    }

    /// QUEUE_REQUEST_CANCEL or a disconnect: no longer waiting. False when it
    /// was not.
    @discardableResult
    func removeWaiting(_ consumer: ClientRecord) -> Bool {
        guard let i = waiting.firstIndex(where: { $0 === consumer }) else { return false }
        waiting.remove(at: i)
        return true
    }

    func isWaiting(_ consumer: ClientRecord) -> Bool { waiting.contains { $0 === consumer } }

    /// QUEUE_ACK (Recommended): the message is done wherever it still is.
    /// False for an unknown id.
    @discardableResult
    func acknowledge(id: String) -> Bool {
        guard let message = byID.removeValue(forKey: id) else { return false }
        switch message.state {
        case .queued: queuedCount -= 1
        case .unacked: unackedCount -= 1
        case .dead: deadCount -= 1
        case .done: break
        }
        message.state = .done
        heldBytes -= message.cost
        if let g = groups[message.targetKey] {
            g.held -= 1
            if g.held == 0 { groups[message.targetKey] = nil }
        }
        compactIfMostlyStale()
        return true
    }

    /// One GC pass (§4) at `now`: unacked past `ackTimeout` die; dead that
    /// were dead before this pass for `dlqTime` go back to the queue, in
    /// DLQ order, followed by a deliver-only attempt. Returns how many
    /// messages (dead-lettered, requeued).
    @discardableResult
    func collectGarbage(now: Int64, ackTimeout: Int64, dlqTime: Int64, context: QueueAttemptContext) -> (died: Int, requeued: Int) {
        // Step 2 first, over the entries that were dead before this pass
        // (step 1 appends its entries after them, as step 3 orders them).
        var requeued: [QueuedMessage] = []
        while deadHead < deadList.count {
            let (message, since) = deadList[deadHead]
            if message.state == .dead && message.since == since {
                guard now - since >= dlqTime else { break }
                deadCount -= 1
                append(message, now: now)
                context.requeued(message, in: self)
                requeued.append(message)
            }
            deadHead += 1
        }
        var died = 0
        while unackedHead < unackedList.count {
            let (message, since) = unackedList[unackedHead]
            if message.state == .unacked && message.since == since {
                guard now - since >= ackTimeout else { break }
                unackedCount -= 1
                kill(message, now: now, context: context)
                died += 1
            }
            unackedHead += 1
        }
        if !requeued.isEmpty { offer(requeued, now: now, context: context) }
        compactIfMostlyStale()
        return (died, requeued.count)
    }

    // MARK: The attempt

    /// Deliver step for messages new to the queue: each goes to the oldest
    /// waiting candidate (or the selector's choice among the candidates).
    private func offer(_ messages: [QueuedMessage], now: Int64, context: QueueAttemptContext) {
        for message in messages where message.state == .queued {
            if waiting.isEmpty { return }
            let candidates = waitingCandidates(for: message.target, context: context)
            guard var chosen = candidates.first else { continue }
            if candidates.count > 1, let selector = selector(of: message.target, context: context) {
                let waiting = self.waiting
                if let k = context.choose(selector, among: candidates.count, value: { selector.value(in: waiting[candidates[$0]].metadata) }) {
                    chosen = candidates[k]
                }
            }
            deliver(message, to: waiting[chosen], now: now, context: context)
        }
    }

    /// Deliver step for a client new to `waiting` (or changed): the oldest
    /// queued message it is a candidate for. The invariant makes it the
    /// only waiting candidate of that message.
    ///
    /// Each group's target is evaluated once (only groups with a message
    /// queued), so this costs O(distinct targets).
    private func offerMessages(to consumer: ClientRecord, now: Int64, context: QueueAttemptContext) {
        var best: Entry?
        for g in groups.values {
            guard let entry = g.liveHead(), best.map({ entry.order < $0.order }) ?? true,
                  isCandidate(consumer, for: g.target, context: context) else { continue }
            best = entry
        }
        if let best { deliver(best.message, to: consumer, now: now, context: context) }
    }

    /// Dead-letter step (only QUEUE and QUEUE_REQUEST): while someone waits
    /// and nothing is deliverable, a head message with no candidate anywhere
    /// goes to the DLQ.
    private func deadLetterUnroutableHead(now: Int64, context: QueueAttemptContext) {
        while !waiting.isEmpty, let message = firstQueued() {
            guard !context.hasCandidate(for: message.target) else { return }
            queuedCount -= 1
            kill(message, now: now, context: context)
        }
    }

    private func deliver(_ message: QueuedMessage, to consumer: ClientRecord, now: Int64, context: QueueAttemptContext) {
        removeWaiting(consumer)
        queuedCount -= 1
        message.state = .unacked
        message.since = now
        unackedCount += 1
        unackedList.append((message, now))
        context.delivered(message, from: self, to: consumer)
    }

    /// The waiting clients that are candidates for `target` (§10 steps 1–2,
    /// with the `optional` fallback), as positions in `waiting`.
    private func waitingCandidates(for target: Query, context: QueueAttemptContext) -> [Int] {
        var positions: [Int] = []
        for (i, record) in waiting.enumerated()
        where target.matches(application: record.applicationID, metadata: record.metadata) {
            positions.append(i)
        }
        if positions.isEmpty && target.optional && !context.anyClientMatchesOps(of: target) {
            for (i, record) in waiting.enumerated()
            where target.matchesBase(application: record.applicationID, metadata: record.metadata) {
                positions.append(i)
            }
        }
        return positions
    }

    private func isCandidate(_ record: ClientRecord, for target: Query, context: QueueAttemptContext) -> Bool {
        if target.matches(application: record.applicationID, metadata: record.metadata) { return true }
        return target.optional && target.matchesBase(application: record.applicationID, metadata: record.metadata)
            && !context.anyClientMatchesOps(of: target)
    }

    /// The target's selector, unless the optional fallback is in effect
    /// (which ignores it, query.md §9).
    private func selector(of target: Query, context: QueueAttemptContext) -> Selector? {
        guard let selector = target.selector else { return nil }
        if target.optional && !context.anyClientMatchesOps(of: target) { return nil }
        return selector
    }

    // MARK: Lists

    private func append(_ message: QueuedMessage, now: Int64) {
        message.state = .queued
        message.since = now
        nextOrder += 1
        message.order = nextOrder
        let entry = Entry(message: message, order: nextOrder)
        queued.append(entry)
        group(of: message).queued.append(entry)
        queuedCount += 1
    }

    /// A message the queue now holds (by id, in bytes, in its target's group).
    private func hold(_ message: QueuedMessage) {
        byID[message.id] = message
        heldBytes += message.cost
        group(of: message).held += 1
    }

    /// The group of `message`'s target (made when it is the first).
    private func group(of message: QueuedMessage) -> TargetGroup {
        if let g = groups[message.targetKey] { return g }
        let g = TargetGroup(target: message.target, key: message.targetKey)
        groups[message.targetKey] = g
        return g
    }

    private func kill(_ message: QueuedMessage, now: Int64, context: QueueAttemptContext) {
        let place = message.state
        message.state = .dead
        message.since = now
        deadCount += 1
        deadList.append((message, now))
        context.deadLettered(message, from: place, in: self)
    }

    private func firstQueued() -> QueuedMessage? {
        while head < queued.count {
            if queued[head].isLive { return queued[head].message }
            head += 1
        }
        return nil
    }

    /// Drops stale entries once they are the majority of a list, so lists
    /// stay within twice the messages they hold.
    private func compactIfMostlyStale() {
        if queued.count - head > 2 * queuedCount + 32 || head > queued.count / 2 {
            queued = queued[head...].filter(\.isLive)
            head = 0
            // Group lists shed their stale entries at the same rate.
            for g in groups.values where g.queued.count > 32 {
                g.queued = g.queued[g.head...].filter(\.isLive)
                g.head = 0
            }
        }
        if unackedList.count - unackedHead > 2 * unackedCount + 32 || unackedHead > unackedList.count / 2 {
            unackedList = unackedList[unackedHead...].filter { $0.message.state == .unacked && $0.message.since == $0.since }
            unackedHead = 0
        }
        if deadList.count - deadHead > 2 * deadCount + 32 || deadHead > deadList.count / 2 {
            deadList = deadList[deadHead...].filter { $0.message.state == .dead && $0.message.since == $0.since }
            deadHead = 0
        }
    }
}

/// What an attempt needs from outside the queue: the rest of the node's
/// (later: the cluster's) clients, the choice among candidates, and the
/// delivery itself.
protocol QueueAttemptContext: AnyObject {
    /// Whether `target` has a candidate anywhere (§10 steps 1–2, with the
    /// `optional` fallback): the dead-letter test.
    func hasCandidate(for target: Query) -> Bool
    /// Whether any client anywhere passes `target`'s base filter and ops
    /// (whether the `optional` fallback is off).
    func anyClientMatchesOps(of target: Query) -> Bool
    /// The selector's choice among `count` candidates (query.md §7), given
    /// each one's selector value; nil when `count` is 0.
    func choose(_ selector: Selector, among count: Int, value: (Int) -> Value?) -> Int?
    /// `message` was moved to unacked for `consumer`: send it.
    func delivered(_ message: QueuedMessage, from queue: MessageQueue, to consumer: ClientRecord)
    /// `message` was moved to the DLQ from `place` (queued or unacked).
    func deadLettered(_ message: QueuedMessage, from place: QueuedMessage.State, in queue: MessageQueue)
    /// `message` was moved from the DLQ back to the queue.
    func requeued(_ message: QueuedMessage, in queue: MessageQueue)
}
