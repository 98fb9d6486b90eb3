import COpenSSL
import Logging

/// The Redis store (QUEUE_STORE=redis): every queue's state lives in Redis,
/// so a node restart, an owner change or a whole-cluster restart loses
/// nothing that was confirmed.
///
/// Keys, for queue `<name>` of cluster group `<group>` (prefix
/// `singyeong:queue:<group>:<name>:`, one Redis server; the names sit inside
/// the keys, so this is not Redis Cluster slot-safe):
///
/// | key | type | holds |
/// |---|---|---|
/// | `owner` | string with expiry | the node holding the lease |
/// | `msgs` | hash | id → `StoredQueueMessage` bytes, every message not acknowledged |
/// | `queued` | sorted set | ids by queue order (`seq`) |
/// | `seq` | counter | the next queue position |
/// | `unacked`, `dead` | sorted sets | ids by when they got there (Redis `TIME`, ms) |
/// | `deliveries` | hash | id → times delivered |
///
/// plus the set `singyeong:queues:<group>` of queue names that may hold
/// messages (read at start-up, so a restarted node serves them again).
///
/// **Every write is fenced.** Each is one Lua script that first checks that
/// `owner` is still this node, and moves are atomic inside it. A node that
/// lost its lease (paused, partitioned, slow) gets `NOTOWNER` and writes
/// nothing; it then drops its mirror of that queue. Times are Redis's own
/// clock, so a node that takes a queue over reads ages that do not depend on
/// the previous owner's clock.
///
/// **Batched (group commit), pipelined, never blocking.** Writes (new
/// messages and moves, of every queue) collect into one script call, applied
/// in the order the mirror made them, each fenced by its queue's lease
/// (checked once per queue per call); the reply says which were applied. A
/// batch goes out at the end of the loop turn if none is in flight, else
/// when the one in flight is answered: under load batches grow instead of
/// round trips multiplying, and a lone write waits no longer than one turn.
/// Measured (BENCHMARKS.md): one call per write cost Redis ~20 µs of CPU
/// per message. Leases (acquire, renew, release) go out at once, after
/// forcing the batch out, so Redis sees everything in call order.
/// Scripts are sent as EVALSHA through one `RedisConnection` (loaded with
/// SCRIPT LOAD first on every new connection; the SHA-1s are computed here
/// with OpenSSL), and Redis answers in order.
final class RedisQueueStore: QueueStore {
    /// Unowned, not weak: the service owns its store, and a weak reference
    /// would make each retain and release of the service slow.
    unowned var delegate: QueueStoreDelegate?
    var isAvailable: Bool { connection.isConnected && scriptsLoaded }

    let nodeID: String
    var ownerID: String? { nodeID }
    let group: String
    /// Lease time; the lease is renewed every `renewMilliseconds`.
    let leaseMilliseconds: Int
    let renewMilliseconds: Int

    private let connection: RedisConnection
    private let loop: EventLoop
    private var logger: Logger
    private var renewTimer: LoopTimer?
    private var scriptsLoaded = false
    /// Queues whose lease this node holds (or is taking).
    private var held: Set<String> = []
    private var renewInFlight = false
    /// This turn's writes: the script call being built, and per write its
    /// queue and (for a new message) completion.
    private var batch: RedisCommandBuilder?
    private var batchWrites: [(queue: String, completion: ((String?) -> Void)?)] = []
    /// A batch was sent and not yet answered: the next one waits for its
    /// reply (group commit), unless a lease command forces it out.
    private var batchInFlight = false
    private lazy var flusher = BatchFlusher(store: self)
    /// The key prefix's head: `singyeong:queue:<group>:`.
    private var keyHead: String { "singyeong:queue:\(group):" }

    init(loop: EventLoop, logger: Logger, dsn: RedisDSN, group: String, nodeID: String, renewMilliseconds: Int) {
        self.loop = loop
        self.logger = logger
        self.group = group
        self.nodeID = nodeID
        self.renewMilliseconds = max(renewMilliseconds, 10)
        leaseMilliseconds = 3 * self.renewMilliseconds
        connection = RedisConnection(loop: loop, logger: logger, dsn: dsn, label: "queues",
                                     retryMilliseconds: self.renewMilliseconds)
        connection.onConnected = { [unowned self] in self.connected() }
        connection.onDisconnected = { [unowned self] reason in self.disconnected(reason) }
    }

    deinit {
        renewTimer?.stop()
        connection.onConnected = nil
        connection.onDisconnected = nil
    }

    var namesKey: String { "singyeong:queues:\(group)" }
    func prefix(_ queue: String) -> String { "singyeong:queue:\(group):\(queue):" }

    func start() {
        let timer = LoopTimer(loop: loop) { [unowned self] in self.renew() }
        let seconds = Double(renewMilliseconds) / 1000
        timer.start(after: seconds, repeating: seconds)
        renewTimer = timer
        connection.start()
    }

    func stop(completion: @escaping () -> Void) {
        renewTimer?.stop()
        flushBatch()
        var sent = false
        if isAvailable && !held.isEmpty {
            var command = RedisCommandBuilder("EVALSHA", Script.release.sha, "0", nodeID, namesKey, keyHead)
            for queue in held { command.add(prefix(queue)) }
            sent = connection.send(command) { [weak self] _ in
                self?.connection.stop()
                completion()
            }
        }
        held.removeAll()
        if !sent {
            connection.stop()
            completion()
        }
    }

    /// The names of every queue that may hold messages.
    func knownQueues(completion: @escaping ([String]) -> Void) {
        guard isAvailable else { return completion([]) }
        let sent = connection.send(["SMEMBERS", namesKey]) { reply in
            guard case .array(let items)? = reply else { return completion([]) }
            completion(items.compactMap(\.text))
        }
        if !sent { completion([]) }
    }

    // MARK: Operations

    func acquire(_ queue: String, completion: @escaping (QueueStoreResult<QueueSnapshot>) -> Void) {
        guard isAvailable else { return completion(.failure("Redis unavailable")) }
        flushBatch()
        held.insert(queue)
        let command = RedisCommandBuilder("EVALSHA", Script.acquire.sha, "0", prefix(queue), nodeID, String(leaseMilliseconds))
        let sent = connection.send(command) { [weak self] reply in
            guard let self else { return }
            let result = Self.snapshot(from: reply)
            if case .success = result {} else { self.held.remove(queue) }
            completion(result)
        }
        if !sent {
            held.remove(queue)
            completion(.failure("Redis unavailable"))
        }
    }

    func add(_ message: StoredQueueMessage.Parts, id: String, to queue: String, completion: @escaping (String?) -> Void) {
        guard isAvailable else { return completion("Redis unavailable") }
        var bytes: [UInt8] = []
        message.encode(into: &bytes)
        write(UInt8(ascii: "q"), id: id, data: bytes, queue: queue, completion: completion)
    }

    func record(_ move: QueueMove, id: String, from: QueuedMessage.State, delivered: Bool, in queue: String) {
        guard isAvailable else { return lost(queue, reason: "Redis unavailable") }
        // Data: the place it left (q, u, x; "" when unknown) and D if it
        // has a delivery count to remove.
        var data: [UInt8] = []
        switch from {
        case .queued: data.append(UInt8(ascii: "q"))
        case .unacked: data.append(UInt8(ascii: "u"))
        case .dead: data.append(UInt8(ascii: "x"))
        case .done: break
        }
        if delivered { data.append(UInt8(ascii: "D")) }
        write(move.rawValue, id: id, data: data, queue: queue, completion: nil)
    }

    func release(_ queue: String) {
        guard held.remove(queue) != nil, isAvailable else { return }
        flushBatch()
        connection.send(RedisCommandBuilder("EVALSHA", Script.release.sha, "0", nodeID, namesKey, keyHead, prefix(queue))) { _ in }
    }

    // MARK: The turn's batch

    private func write(_ op: UInt8, id: String, data: [UInt8], queue: String, completion: ((String?) -> Void)?) {
        if batch == nil {
            batch = RedisCommandBuilder("EVALSHA", Script.batch.sha, "0", nodeID, namesKey, keyHead)
            if !batchInFlight { loop.runAtEndOfTurn(flusher) }
        }
        batch!.add(prefix(queue))
        batch!.add(CollectionOfOne(op))
        batch!.add(id)
        batch!.add(data)
        batchWrites.append((queue, completion))
    }

    /// Sends the collected writes as one script call: at the end of a turn
    /// or when the batch in flight is answered (`force`: now, before a lease
    /// command, so Redis sees call order).
    fileprivate func flushBatch(force: Bool = true) {
        guard let command = batch, force || !batchInFlight else { return }
        let writes = batchWrites
        batch = nil
        batchWrites = []
        batchInFlight = true
        let sent = connection.send(command) { [weak self] reply in
            guard let self else { return }
            self.batchInFlight = false
            self.applied(writes, reply: reply)
            self.flushBatch(force: false)
        }
        if !sent {
            batchInFlight = false
            applied(writes, reply: nil)
        }
    }

    /// The batch's reply: per write 1 (applied) or 0 (the lease is not this
    /// node's). A failed call fails every write in it.
    private func applied(_ writes: [(queue: String, completion: ((String?) -> Void)?)], reply: RedisValue?) {
        var results: [RedisValue] = []
        var failure: String?
        if case .array(let items)? = reply, items.count == writes.count {
            results = items
        } else {
            failure = self.failure(of: reply) ?? "unexpected reply to the write script"
        }
        var reported: Set<String> = []
        for (i, write) in writes.enumerated() {
            let reason = failure ?? (results[i].integer == 1 ? nil : "NOTOWNER")
            if let reason, reported.insert(write.queue).inserted {
                lost(write.queue, reason: "a write failed: \(reason)")
            }
            write.completion?(reason.map(Self.explain))
        }
    }

    // MARK: Connection and leases

    private func connected() {
        scriptsLoaded = false
        let scripts = Script.all
        for (i, script) in scripts.enumerated() {
            connection.send(["SCRIPT", "LOAD", script.source]) { [weak self] reply in
                guard let self else { return }
                guard let sha = reply?.text, sha == script.sha else {
                    if let reply { self.connection.drop(reason: "SCRIPT LOAD failed: \(reply)", level: .error) }
                    return
                }
                if i == scripts.count - 1 {
                    self.scriptsLoaded = true
                    self.delegate?.storeAvailable()
                }
            }
        }
    }

    private func disconnected(_ reason: String) {
        scriptsLoaded = false
        renewInFlight = false
        // Every outstanding write was answered nil (and reported); leases
        // held are to be taken again once Redis is back.
        let queues = held
        held.removeAll()
        for queue in queues { delegate?.storeLost(queue, reason: "Redis connection lost: \(reason)") }
    }

    /// Renews every lease held, in one script; a lease found gone or taken
    /// is reported lost.
    private func renew() {
        guard isAvailable, !held.isEmpty, !renewInFlight else { return }
        let queues = Array(held)
        var command = RedisCommandBuilder("EVALSHA", Script.renew.sha, "0", nodeID, String(leaseMilliseconds))
        for queue in queues { command.add(prefix(queue)) }
        renewInFlight = true
        connection.send(command) { [weak self] reply in
            guard let self else { return }
            self.renewInFlight = false
            guard case .array(let lost)? = reply else {
                if let reply { self.logger.warning("queues: lease renewal failed", metadata: ["error": "\(reply)"]) }
                return
            }
            for index in lost.compactMap(\.integer) where (1...queues.count).contains(index) {
                self.lost(queues[index - 1], reason: "lease lost")
            }
        }
    }

    private func lost(_ queue: String, reason: String) {
        held.remove(queue)
        delegate?.storeLost(queue, reason: reason)
    }

    /// A failure as a client reads it.
    private static func explain(_ failure: String) -> String {
        failure.hasPrefix("NOTOWNER") ? "the queue is held by another node" : failure
    }

    /// nil for a successful reply, else what went wrong. NOSCRIPT (someone
    /// flushed the scripts) drops the connection, which loads them again.
    private func failure(of reply: RedisValue?) -> String? {
        switch reply {
        case nil: return "Redis connection lost"
        case .error(let message)?:
            if message.hasPrefix("NOSCRIPT") { connection.drop(reason: "scripts were flushed") }
            return message
        default: return nil
        }
    }

    /// Reads the acquire script's reply: `{1, now, queued, unacked+scores,
    /// dead+scores, msgs, deliveries}` or `{0, owner}`.
    static func snapshot(from reply: RedisValue?) -> QueueStoreResult<QueueSnapshot> {
        guard let reply else { return .failure("Redis connection lost") }
        if case .error(let message) = reply { return .failure(message) }
        guard case .array(let parts) = reply, let status = parts.first?.integer else {
            return .failure("unexpected reply to the acquire script")
        }
        if status == 0 { return .ownedElsewhere(parts.count > 1 ? parts[1].text ?? "?" : "?") }
        guard parts.count == 7, let now = parts[1].integer,
              case .array(let queuedIDs) = parts[2], case .array(let unackedPairs) = parts[3],
              case .array(let deadPairs) = parts[4], case .array(let messagePairs) = parts[5],
              case .array(let deliveryPairs) = parts[6]
        else { return .failure("unexpected reply to the acquire script") }
        var messages: [String: StoredQueueMessage] = [:]
        var i = 0
        while i + 1 < messagePairs.count {
            if let id = messagePairs[i].text, case .string(let bytes) = messagePairs[i + 1],
               let message = StoredQueueMessage(decoding: bytes) {
                messages[id] = message
            }
            i += 2
        }
        var deliveries: [String: Int] = [:]
        i = 0
        while i + 1 < deliveryPairs.count {
            if let id = deliveryPairs[i].text, let n = deliveryPairs[i + 1].text.flatMap({ Int($0) }) { deliveries[id] = n }
            i += 2
        }
        var snapshot = QueueSnapshot()
        func entry(_ id: String?, since: Int64?) -> QueueSnapshot.Entry? {
            guard let id, let message = messages.removeValue(forKey: id) else { return nil }
            return QueueSnapshot.Entry(id: id, message: message, age: max(0, Int64(now) - (since ?? Int64(now))),
                                       deliveries: deliveries[id] ?? 0)
        }
        for id in queuedIDs { if let e = entry(id.text, since: nil) { snapshot.queued.append(e) } }
        func scored(_ pairs: [RedisValue]) -> [QueueSnapshot.Entry] {
            var out: [QueueSnapshot.Entry] = []
            var i = 0
            while i + 1 < pairs.count {
                let since = pairs[i + 1].text.flatMap { Double($0) }.map { Int64($0) }
                if let e = entry(pairs[i].text, since: since) { out.append(e) }
                i += 2
            }
            return out
        }
        snapshot.unacked = scored(unackedPairs)
        snapshot.dead = scored(deadPairs)
        // A message in `msgs` that no place lists (it cannot happen through
        // these scripts, but a hand edit could do it) is not lost: queued.
        for (id, message) in messages.sorted(by: { $0.key < $1.key }) {
            snapshot.queued.append(QueueSnapshot.Entry(id: id, message: message, age: 0, deliveries: deliveries[id] ?? 0))
        }
        return .success(snapshot)
    }
}

/// The store's Lua scripts and their SHA-1s.
private struct Script {
    let source: String
    let sha: String

    init(_ source: String) {
        self.source = source
        var digest = [UInt8](repeating: 0, count: 20)
        let bytes = Array(source.utf8)
        _ = SHA1(bytes, bytes.count, &digest)
        let hex = Array("0123456789abcdef".utf8)
        sha = String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// Takes the lease unless another node holds it, then reads everything.
    /// ARGV: prefix, node, lease ms.
    static let acquire = Script("""
        local p = ARGV[1]
        local owner = redis.call('GET', p .. 'owner')
        if owner and owner ~= ARGV[2] then return {0, owner} end
        redis.call('SET', p .. 'owner', ARGV[2], 'PX', ARGV[3])
        local t = redis.call('TIME')
        return {1, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
          redis.call('ZRANGE', p .. 'queued', 0, -1),
          redis.call('ZRANGE', p .. 'unacked', 0, -1, 'WITHSCORES'),
          redis.call('ZRANGE', p .. 'dead', 0, -1, 'WITHSCORES'),
          redis.call('HGETALL', p .. 'msgs'),
          redis.call('HGETALL', p .. 'deliveries')}
        """)

    /// A turn's writes, in order. ARGV: node, names key, key head, then per
    /// write: prefix, op, id, data. Ops: `q` a new message (data: its
    /// bytes) at the end of the queue; `QueueMove`'s letters (`d` queued →
    /// unacked, counted; `x` → dead; `r` dead → queued; `a` gone), whose
    /// data names the place left (`q`, `u`, `x`; every place when empty)
    /// and, with `D`, a delivery count to drop. Each queue's lease is
    /// checked once; a write to a queue whose lease is not this node's is
    /// skipped (0), the others applied (1). The mirror only moves messages
    /// it holds, so moves need no existence check.
    static let batch = Script("""
        local node, names, head = ARGV[1], ARGV[2], ARGV[3]
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local places = {q = 'queued', u = 'unacked', x = 'dead'}
        local function leave(p, id, d)
          local place = places[string.sub(d, 1, 1)]
          if place then
            redis.call('ZREM', p .. place, id)
          else
            redis.call('ZREM', p .. 'queued', id)
            redis.call('ZREM', p .. 'unacked', id)
            redis.call('ZREM', p .. 'dead', id)
          end
        end
        local owned, named, out = {}, {}, {}
        for i = 4, #ARGV, 4 do
          local p, m, id, d = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
          local ok = owned[p]
          if ok == nil then
            ok = redis.call('GET', p .. 'owner') == node
            owned[p] = ok
          end
          if not ok then
            out[#out + 1] = 0
          else
            if m == 'q' then
              redis.call('HSET', p .. 'msgs', id, ARGV[i + 3])
              redis.call('ZADD', p .. 'queued', redis.call('INCR', p .. 'seq'), id)
              if not named[p] then
                named[p] = true
                redis.call('SADD', names, string.sub(p, #head + 1, -2))
              end
            elseif m == 'd' then
              redis.call('ZREM', p .. 'queued', id)
              redis.call('ZADD', p .. 'unacked', now, id)
              redis.call('HINCRBY', p .. 'deliveries', id, 1)
            elseif m == 'x' then
              leave(p, id, d)
              redis.call('ZADD', p .. 'dead', now, id)
            elseif m == 'r' then
              redis.call('ZREM', p .. 'dead', id)
              redis.call('ZADD', p .. 'queued', redis.call('INCR', p .. 'seq'), id)
            elseif m == 'a' then
              redis.call('HDEL', p .. 'msgs', id)
              if d == '' or string.find(d, 'D', 1, true) then redis.call('HDEL', p .. 'deliveries', id) end
              leave(p, id, d)
            else
              return redis.error_reply('unknown write ' .. m)
            end
            out[#out + 1] = 1
          end
        end
        return out
        """)

    /// Renews the leases still this node's; returns the positions (from 1)
    /// of the ones that are not. ARGV: node, lease ms, prefixes.
    static let renew = Script("""
        local lost = {}
        for i = 3, #ARGV do
          local k = ARGV[i] .. 'owner'
          if redis.call('GET', k) == ARGV[1] then
            redis.call('PEXPIRE', k, ARGV[2])
          else
            lost[#lost + 1] = i - 2
          end
        end
        return lost
        """)

    /// Gives up the leases still this node's; a queue left empty leaves the
    /// names set. ARGV: node, names key, key head, prefixes.
    static let release = Script("""
        for i = 4, #ARGV do
          local p = ARGV[i]
          if redis.call('GET', p .. 'owner') == ARGV[1] then
            redis.call('DEL', p .. 'owner')
            if redis.call('HLEN', p .. 'msgs') == 0 then redis.call('SREM', ARGV[2], string.sub(p, #ARGV[3] + 1, -2)) end
          end
        end
        return 1
        """)

    static let all = [acquire, batch, renew, release]
}

/// Sends a store's batch at the end of the loop turn.
private final class BatchFlusher: EndOfTurnTask {
    weak var store: RedisQueueStore?
    init(store: RedisQueueStore) { self.store = store }
    override func runEndOfTurn() { store?.flushBatch(force: false) }
}
