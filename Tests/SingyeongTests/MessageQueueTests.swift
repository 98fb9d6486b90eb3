import Testing
@testable import Singyeong

/// A context with a fixed set of clients "anywhere", first-candidate
/// choice for selectors, and a log of deliveries.
private final class FakeContext: QueueAttemptContext {
    var everywhere: [ClientRecord] = []
    var deliveries: [(id: String, to: String)] = []

    func hasCandidate(for target: Query) -> Bool {
        anyClientMatchesOps(of: target)
            || (target.optional && everywhere.contains { target.matchesBase(application: $0.applicationID, metadata: $0.metadata) })
    }

    func anyClientMatchesOps(of target: Query) -> Bool {
        everywhere.contains { target.matches(application: $0.applicationID, metadata: $0.metadata) }
    }

    func choose(_ selector: Selector, among count: Int, value: (Int) -> Value?) -> Int? {
        var rng = FastRandom(seed: 1)
        return selector.choose(among: count, value: value, using: &rng)
    }

    /// Every move in the order the queue made it, as a store would write them.
    var moves: [String] = []

    func delivered(_ message: QueuedMessage, from queue: MessageQueue, to consumer: ClientRecord) {
        deliveries.append((message.id, consumer.clientID))
        moves.append("d:\(message.id)")
    }

    func deadLettered(_ message: QueuedMessage, from place: QueuedMessage.State, in queue: MessageQueue) {
        moves.append("x\(place == .queued ? "q" : "u"):\(message.id)")
    }
    func requeued(_ message: QueuedMessage, in queue: MessageQueue) { moves.append("r:\(message.id)") }
}

private func client(_ id: String, app: String = "app", n: Int64 = 0) -> ClientRecord {
    var m = ClientMetadata()
    if case .success(let u) = MetadataUpdate.validate(.object(ValueObject([("n", .object(ValueObject([("type", .string("integer")), ("value", .int(n))])))]))) {
        m.apply(u, strategy: .merge)
    }
    return ClientRecord(applicationID: app, clientID: id, handle: 0, restricted: false, encoding: .json,
                        receivesClientUpdates: false, socketIP: nil, tags: [], metadata: m, session: nil)
}

private func target(_ json: String) -> Query {
    guard case .success(let q) = Query.parse(QueryTestJSON.parse(json)) else { fatalError("bad test target \(json)") }
    return q
}

private func message(_ id: String, _ t: String) -> QueuedMessage {
    let payload: [UInt8] = Array("1".utf8) + [UInt8](repeating: 0, count: 64)
    let content = payload.withUnsafeBytes {
        OwnedRoutedMessage(copying: RoutedMessage(event: "QUEUE", encoding: .json, nonce: nil,
                                                  payload: UnsafeRawBufferPointer(rebasing: $0[0..<1])))
    }
    return QueuedMessage(id: id, target: target(t), targetKey: TargetKey(encoding: .json, target: Array(t.utf8)), content: content, cost: 100, now: 0)
}

/// The Recommended dispatch attempt (queues.md §3.2) and GC (§4) on one
/// queue, with the invariant that makes attempts incremental.
@Suite struct MessageQueueTests {
    @Test func deliversOldestFirstToTheLongestWaiting() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a"), b = client("b")
        ctx.everywhere = [a, b]
        q.request(by: a, now: 0, context: ctx)
        q.request(by: b, now: 0, context: ctx)
        q.enqueue(message("m1", #"{"application":"app"}"#), now: 1, context: ctx)
        q.enqueue(message("m2", #"{"application":"app"}"#), now: 1, context: ctx)
        #expect(ctx.deliveries.map { "\($0.id)→\($0.to)" } == ["m1→a", "m2→b"])
        #expect(q.waiting.isEmpty && q.unackedCount == 2 && q.queuedCount == 0)
    }

    @Test func noHeadOfLineBlockingAndNothingLost() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a", app: "A"), b = client("b", app: "B")
        ctx.everywhere = [a, b]
        q.enqueue(message("forA", #"{"application":"A"}"#), now: 0, context: ctx)
        q.enqueue(message("forB", #"{"application":"B"}"#), now: 0, context: ctx)
        q.request(by: b, now: 1, context: ctx)
        #expect(ctx.deliveries.map(\.id) == ["forB"])
        #expect(q.queuedCount == 1 && q.deadCount == 0)
        q.request(by: a, now: 2, context: ctx)
        #expect(ctx.deliveries.map(\.id) == ["forB", "forA"])
    }

    @Test func aRequestTakesTheOldestMessageItMatches() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let low = client("low", n: 1), other = client("other", app: "X")
        ctx.everywhere = [low, other]
        q.enqueue(message("big", #"{"application":"app","ops":[{"path":"/n","op":"$gt","to":{"value":5}}]}"#), now: 0, context: ctx)
        q.enqueue(message("x", #"{"application":"X"}"#), now: 0, context: ctx)
        q.enqueue(message("small1", #"{"application":"app","ops":[{"path":"/n","op":"$lt","to":{"value":5}}]}"#), now: 0, context: ctx)
        q.enqueue(message("small2", #"{"application":"app","ops":[{"path":"/n","op":"$lt","to":{"value":5}}]}"#), now: 0, context: ctx)
        q.request(by: low, now: 1, context: ctx)
        q.request(by: low, now: 1, context: ctx)
        #expect(ctx.deliveries.map(\.id) == ["small1", "small2"])
        #expect(q.queuedCount == 2)
    }

    @Test func aRepeatedRequestKeepsItsPlace() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a"), b = client("b")
        ctx.everywhere = [a, b]
        #expect(q.request(by: a, now: 0, context: ctx))
        #expect(q.request(by: b, now: 0, context: ctx))
        #expect(!q.request(by: a, now: 1, context: ctx))
        #expect(q.waiting.map(\.clientID) == ["a", "b"])
        q.enqueue(message("m", #"{"application":"app"}"#), now: 2, context: ctx)
        #expect(ctx.deliveries.map(\.to) == ["a"])
    }

    /// Only QUEUE and QUEUE_REQUEST dead-letter, only a head message, only
    /// while someone waits, only without a candidate anywhere.
    @Test func deadLetteringRules() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a")
        ctx.everywhere = [a]
        q.enqueue(message("lost", #"{"application":"nobody"}"#), now: 0, context: ctx)
        #expect(q.queuedCount == 1 && q.deadCount == 0)  // nobody waits
        q.request(by: a, now: 1, context: ctx)
        #expect(q.queuedCount == 0 && q.deadCount == 1 && q.waiting.count == 1)
        // Requeued by the GC: the GC's attempt only delivers.
        q.collectGarbage(now: 1 + 100, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(q.queuedCount == 1 && q.deadCount == 0)
        // An optional target with a base-filter client somewhere is routable.
        q.enqueue(message("opt", #"{"application":"app","optional":true,"ops":[{"path":"/n","op":"$eq","to":{"value":7}}]}"#),
                  now: 2, context: ctx)
        #expect(ctx.deliveries.map(\.id) == ["opt"])
        // The delivery ended the only request: nobody waits, so the
        // unroutable head ("lost", requeued) stays queued.
        #expect(q.deadCount == 0 && q.queuedCount == 1)
        q.request(by: a, now: 3, context: ctx)
        #expect(q.deadCount == 1 && q.queuedCount == 0)
    }

    /// §4: one pass never moves a message from unacked straight back to
    /// the queue; requeued messages keep DLQ order and are offered.
    @Test func garbageCollectionOrder() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a")
        ctx.everywhere = [a]
        for id in ["m1", "m2"] {
            q.enqueue(message(id, #"{"application":"app"}"#), now: 0, context: ctx)
            q.request(by: a, now: 0, context: ctx)
        }
        #expect(q.unackedCount == 2)
        var r = q.collectGarbage(now: 50, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(r.died == 0 && r.requeued == 0)
        r = q.collectGarbage(now: 100, ackTimeout: 100, dlqTime: 0, context: ctx)
        #expect(r.died == 2 && r.requeued == 0 && q.deadCount == 2)
        r = q.collectGarbage(now: 150, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(r.requeued == 0)
        q.request(by: a, now: 160, context: ctx)  // waiting when they come back
        r = q.collectGarbage(now: 200, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(r.requeued == 2)
        #expect(ctx.deliveries.map(\.id) == ["m1", "m2", "m1"])  // redelivered in DLQ order, same id
        #expect(q.queuedCount == 1 && q.unackedCount == 1)
    }

    @Test func anAckRemovesTheMessageWhereverItIs() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a")
        ctx.everywhere = [a]
        q.enqueue(message("queued", #"{"application":"app"}"#), now: 0, context: ctx)
        q.enqueue(message("unacked", #"{"application":"app"}"#), now: 0, context: ctx)
        q.enqueue(message("dead", #"{"application":"app"}"#), now: 0, context: ctx)
        q.request(by: a, now: 0, context: ctx)  // takes "queued"
        q.request(by: a, now: 0, context: ctx)  // takes "unacked"
        q.collectGarbage(now: 100, ackTimeout: 100, dlqTime: 1000, context: ctx)  // both die
        q.request(by: a, now: 101, context: ctx)  // takes "dead"
        #expect(q.deadCount == 2 && q.unackedCount == 1)
        #expect(q.acknowledge(id: "queued") && q.acknowledge(id: "dead"))
        #expect(q.deadCount == 1 && q.unackedCount == 0)
        #expect(!q.acknowledge(id: "dead") && !q.acknowledge(id: "nope"))
        #expect(q.acknowledge(id: "unacked"))
        #expect(q.heldCount == 0 && q.heldBytes == 0)
        q.removeWaiting(a)
        #expect(q.isIdle)
        // The stale entries of acknowledged messages never come back.
        q.collectGarbage(now: 5000, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(q.heldCount == 0)
    }

    @Test func aWaitingClientsNewMetadataIsOffered() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a", n: 1)
        ctx.everywhere = [a, client("busy", n: 2)]  // a candidate exists, not waiting: no dead-lettering
        q.enqueue(message("m", #"{"application":"app","ops":[{"path":"/n","op":"$eq","to":{"value":2}}]}"#), now: 0, context: ctx)
        q.request(by: a, now: 0, context: ctx)
        #expect(ctx.deliveries.isEmpty && q.queuedCount == 1)
        let two = client("a", n: 2).metadata
        a.metadata = two
        q.metadataChanged(of: a, now: 1, context: ctx)
        #expect(ctx.deliveries.map(\.id) == ["m"])
    }

    /// Many moves through every list: counts stay exact and lists compact.
    @Test func countsStayExactThroughManyMoves() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a")
        ctx.everywhere = [a]
        var now: Int64 = 0
        var acked = 0
        for i in 0..<2000 {
            q.enqueue(message("m\(i)", #"{"application":"app"}"#), now: now, context: ctx)
            if i % 3 == 0 { q.request(by: a, now: now, context: ctx) }
            if i % 7 == 0, let last = ctx.deliveries.last, q.acknowledge(id: last.id) { acked += 1 }
            if i % 50 == 0 { now += 100; q.collectGarbage(now: now, ackTimeout: 100, dlqTime: 100, context: ctx) }
        }
        #expect(q.heldCount == 2000 - acked)
        #expect(q.queuedMessages.count == q.queuedCount)
        #expect(q.heldBytes == 100 * (2000 - acked))
    }

    /// Every move is reported (the store writes them in this order): the
    /// dead-letter step, deliveries, the GC's deaths and requeues.
    @Test func everyMoveIsReportedInOrder() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a")
        ctx.everywhere = [a]
        q.enqueue(message("lost", #"{"application":"nobody"}"#), now: 0, context: ctx)
        q.enqueue(message("m", #"{"application":"app"}"#), now: 0, context: ctx)
        q.request(by: a, now: 1, context: ctx)  // takes m; nobody waits after it
        q.request(by: a, now: 2, context: ctx)  // waits: the unroutable head dies
        // The DLQ's requeue first (lost, dead since 2), then the ack timeout (m).
        q.collectGarbage(now: 200, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(ctx.moves == ["d:m", "xq:lost", "r:lost", "xu:m"])
        q.collectGarbage(now: 400, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(ctx.moves == ["d:m", "xq:lost", "r:lost", "xu:m", "r:m", "d:m"])  // a still waits
    }

    /// A mirror read from a store: places, times and counts as given, then
    /// a deliver-only attempt; dropping it keeps the waiting clients.
    @Test func loadAndDropKeepWaitingClients() {
        let q = MessageQueue(name: "q", loaded: false), ctx = FakeContext()
        let a = client("a", app: "A")
        ctx.everywhere = [a]
        q.request(by: a, now: 0, context: ctx)
        #expect(ctx.deliveries.isEmpty && q.waiting.count == 1)  // not loaded: no attempt
        let queued = [message("b1", #"{"application":"B"}"#), message("a1", #"{"application":"A"}"#)]
        let unacked = message("u", #"{"application":"A"}"#), dead = message("x", #"{"application":"A"}"#)
        unacked.since = 5
        dead.since = 7
        queued.forEach { $0.since = 3 }
        q.load(queued: queued, unacked: [unacked], dead: [dead], now: 10, context: ctx)
        #expect(q.isLoaded && ctx.deliveries.map(\.id) == ["a1"])  // past b1, no head-of-line blocking
        #expect(q.queuedCount == 1 && q.unackedCount == 2 && q.deadCount == 1 && q.heldBytes == 400)
        #expect(q.oldestQueuedSince == 3)
        let r = q.collectGarbage(now: 105, ackTimeout: 100, dlqTime: 100, context: ctx)
        #expect(r.died == 1 && r.requeued == 0)  // u (since 5) died; a1 (since 10) not yet; x not yet
        q.request(by: a, now: 106, context: ctx)
        let bytes = q.dropMessages()
        #expect(bytes == 400 && !q.isLoaded && q.heldCount == 0 && q.waiting.count == 1)
        #expect(q.message(id: "a1") == nil && unacked.state == .done)
    }

    /// Requests look at each target once (groups), yet take the oldest
    /// message among the targets they match, whatever the groups' order.
    @Test func aRequestTakesTheOldestAcrossTargets() {
        let q = MessageQueue(name: "q"), ctx = FakeContext()
        let a = client("a", n: 3)
        ctx.everywhere = [a]
        let t1 = #"{"application":"app","ops":[{"path":"/n","op":"$gte","to":{"value":1}}]}"#
        let t2 = #"{"application":"other"}"#
        let t3 = #"{"application":"app","ops":[{"path":"/n","op":"$lte","to":{"value":5}}]}"#
        for (id, t) in [("m1", t2), ("m2", t3), ("m3", t1), ("m4", t3), ("m5", t1)] {
            q.enqueue(message(id, t), now: 0, context: ctx)
        }
        #expect(q.targetCount == 3)
        for _ in 0..<4 { q.request(by: a, now: 1, context: ctx) }
        #expect(ctx.deliveries.map(\.id) == ["m2", "m3", "m4", "m5"])
        #expect(q.queuedMessages.map(\.id) == ["m1"])
        for id in ["m2", "m3", "m4", "m5"] { q.acknowledge(id: id) }
        #expect(q.targetCount == 1)  // groups go with their last message
    }
}
