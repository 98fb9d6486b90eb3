import CHiredis
import CLibev
import Logging

/// The node registry (cluster.md §2.5) in Redis.
///
/// One asynchronous hiredis connection attached to the node's libev loop: no
/// call here ever blocks the loop on Redis (except the name lookup hiredis 0.14
/// does inside `redisAsyncConnect`, which is instant for an IP address).
/// Every tick the node refreshes its own entry and expiring per-node key, reads
/// the hash, removes members whose per-node key has expired (crashed nodes),
/// and reports the rest. When Redis is unreachable it keeps retrying with a
/// tick-based backoff and stops reporting, so the cluster keeps its last view.
final class RedisRegistry {
    /// Called after every successful HGETALL with the registry's members (node id → address), self excluded.
    var onMembers: (([String: String]) -> Void)?
    /// This node has been written into the registry at least once (readiness).
    private(set) var hasRegistered = false
    /// Called once, after the first successful registration.
    var onRegistered: (() -> Void)?
    /// Redis link state changes (for logs/metrics/readiness): true = connected and authenticated/selected.
    var onStateChange: ((Bool) -> Void)?
    private(set) var isConnected = false

    let dsn: RedisDSN
    let group: String
    let nodeID: String
    let advertise: String
    let tickMilliseconds: Int
    /// `singyeong:cluster:registry:<group>`: the hash of node id → address.
    let registryKey: String

    private let loop: EventLoop
    private var logger: Logger
    private var timer: LoopTimer?

    /// Where the connection stands; only `.connected` sends registry commands.
    private enum Phase {
        case stopped
        /// Waiting for the next connect attempt (backoff).
        case disconnected
        /// TCP connect in progress.
        case connecting
        /// Connected; AUTH/SELECT in flight.
        case handshaking
        case connected
    }

    private var phase: Phase = .stopped
    /// The current hiredis context's owner object (nil when there is none).
    private var link: RedisLink?
    /// Connect attempts that failed in a row (drives the backoff).
    private var failures = 0
    /// Ticks still to skip before the next connect attempt.
    private var ticksUntilRetry = 0
    /// Ticks spent in the current connect/handshake, or with a tick's commands
    /// unanswered; hiredis 0.14 has no timeouts, so a silent Redis is detected here.
    private var stalledTicks = 0
    /// A tick's HGETALL/MGET chain is still waiting for replies.
    private var refreshInFlight = false
    /// The last failure logged at warning level; repeats go to debug so a long
    /// outage logs once, not once per tick.
    private var lastFailure: String?
    /// Set by `deregister`: no more ticks, the connection only serves the goodbye.
    private var deregistration: Deregistration?

    /// Ticks without progress before a connect, handshake or tick is given up
    /// (at least 2 s, so a short test tick does not make a busy Redis look dead).
    private var stallLimit: Int { max(5, (2000 + tickMilliseconds - 1) / max(tickMilliseconds, 1)) }
    /// Per-node key TTL: three ticks without a refresh and the node counts as crashed.
    private var nodeKeyTTL: Int { 3 * tickMilliseconds }

    init(loop: EventLoop, logger: Logger, dsn: RedisDSN, group: String, nodeID: String, advertise: String, tickMilliseconds: Int) {
        self.loop = loop
        self.logger = logger
        self.logger[metadataKey: "redis"] = "\(dsn)"
        self.dsn = dsn
        self.group = group
        self.nodeID = nodeID
        self.advertise = advertise
        self.tickMilliseconds = max(tickMilliseconds, 1)
        registryKey = "singyeong:cluster:registry:\(group)"
    }

    deinit {
        timer?.stop()
        if let link {
            link.owner = nil
            closeLink(link)
        }
    }

    /// The per-node key whose expiry tells other nodes that `id` crashed.
    func nodeKey(_ id: String) -> String { "singyeong:cluster:node:\(group):\(id)" }

    /// Connects and starts ticking (first tick right away).
    func start() {
        guard phase == .stopped, deregistration == nil else { return }
        if dsn.tls {
            logger.error("rediss:// is not supported by this build (hiredis 0.14 has no TLS); the registry stays offline")
            return
        }
        phase = .disconnected
        failures = 0
        ticksUntilRetry = 0
        let timer = LoopTimer(loop: loop) { [unowned self] in self.tick() }
        self.timer = timer
        let interval = Double(tickMilliseconds) / 1000
        timer.start(after: interval, repeating: interval)
        tick()
    }

    /// Removes `nodeID` from the registry (HDEL), e.g. after its peer link failed (cluster.md: "if I can't reach you, you're gone").
    /// Best effort: without a Redis connection nothing is sent (the node's
    /// expiring key gets it removed anyway if it is really gone).
    func remove(nodeID id: String) {
        guard id != nodeID else { return }
        guard phase == .connected, let link else {
            logger.debug("registry: not connected, cannot remove node", metadata: ["node": "\(LogText.escape(id))"])
            return
        }
        send(["HDEL", registryKey, id], on: link) { [weak self] reply in
            guard let self, let reply, case .error(let message) = reply else { return }
            self.logger.warning("registry: HDEL failed", metadata: ["node": "\(LogText.escape(id))", "error": "\(message)"])
        }
    }

    /// Graceful shutdown: HDEL self + DEL the per-node key, then call `completion` (or after `timeout` seconds at most, even if Redis is down).
    /// Ticking stops at once so the node does not register itself again.
    func deregister(timeout: Double, completion: @escaping () -> Void) {
        if let running = deregistration {
            // A second call just waits for the first one.
            if running.finished {
                completion()
            } else {
                let previous = running.completion
                running.completion = { previous(); completion() }
            }
            return
        }
        timer?.stop()
        let goodbye = Deregistration(completion: completion)
        deregistration = goodbye
        goodbye.timer = LoopTimer(loop: loop) { [weak self] in
            guard let self else { return }
            self.logger.warning("registry: deregistration timed out; other nodes will drop this node when its key expires")
            self.finishDeregistration()
        }
        goodbye.timer?.start(after: max(timeout, 0))
        switch phase {
        case .connected:
            sendGoodbye()
        case .connecting, .handshaking:
            // The handshake's end sends the goodbye (or its failure finishes).
            break
        case .disconnected:
            connect()
            if phase == .disconnected { finishDeregistration() }
        case .stopped:
            finishDeregistration()
        }
    }

    /// Stops ticking and closes the connection without deregistering.
    func stop() {
        timer?.stop()
        timer = nil
        let wasConnected = isConnected
        phase = .stopped
        refreshInFlight = false
        if let link {
            self.link = nil
            closeLink(link)
        }
        setConnected(false, notify: wasConnected)
    }

    // MARK: - Ticks

    /// One registry round: connect (with backoff) or refresh and read.
    private func tick() {
        switch phase {
        case .stopped:
            return
        case .disconnected:
            if ticksUntilRetry > 0 {
                ticksUntilRetry -= 1
                return
            }
            connect()
        case .connecting, .handshaking:
            stalledTicks += 1
            if stalledTicks >= stallLimit {
                dropConnection(reason: phase == .connecting ? "connect timed out" : "no answer to AUTH/SELECT")
            }
        case .connected:
            if refreshInFlight {
                stalledTicks += 1
                if stalledTicks >= stallLimit { dropConnection(reason: "Redis stopped answering") }
                return
            }
            refresh()
        }
    }

    /// Opens a new hiredis context (hiredis never reuses one after a disconnect).
    private func connect() {
        phase = .connecting
        stalledTicks = 0
        guard let context = redisAsyncConnect(dsn.host, Int32(dsn.port)) else {
            connectFailed("out of memory creating the hiredis context")
            return
        }
        if context.pointee.err != 0 {
            let message = context.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            // Not attached and no callbacks will run: ours to free.
            redisAsyncFree(context)
            connectFailed(message)
            return
        }
        let link = RedisLink(owner: self, context: context)
        context.pointee.data = Unmanaged.passRetained(link).toOpaque()
        link.retained = true
        self.link = link
        if sy_redis_attach_libev(context, loop.raw) != REDIS_OK {
            self.link = nil
            closeLink(link)
            connectFailed("could not attach to the event loop")
            return
        }
        redisAsyncSetConnectCallback(context) { context, status in
            guard let context, let data = context.pointee.data else { return }
            let link = Unmanaged<RedisLink>.fromOpaque(data).takeUnretainedValue()
            if status == REDIS_OK {
                link.callbackDepth += 1
                link.owner?.linkConnected(link)
                link.callbackDepth -= 1
            } else {
                // hiredis frees the context when this returns; no disconnect callback follows.
                let message = context.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
                link.context = nil
                link.owner?.linkClosed(link, error: message)
                link.releaseRetain()
            }
        }
        redisAsyncSetDisconnectCallback(context) { context, status in
            guard let context, let data = context.pointee.data else { return }
            let link = Unmanaged<RedisLink>.fromOpaque(data).takeUnretainedValue()
            // hiredis frees the context when this returns.
            let message = status == REDIS_OK ? "connection closed" : (context.pointee.errstr.map { String(cString: $0) } ?? "connection lost")
            link.context = nil
            link.owner?.linkClosed(link, error: message)
            link.releaseRetain()
        }
    }

    /// TCP is up: authenticate and select the database before anything else.
    private func linkConnected(_ link: RedisLink) {
        guard link === self.link else { return }
        phase = .handshaking
        stalledTicks = 0
        if let password = dsn.password {
            let auth = dsn.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]
            send(auth, on: link) { [weak self] reply in
                guard let self, link === self.link else { return }
                if case .error(let message)? = reply {
                    self.dropConnection(reason: "AUTH failed: \(message)", level: .error)
                }
            }
        }
        send(["SELECT", String(dsn.db)], on: link) { [weak self] reply in
            guard let self, link === self.link, self.phase == .handshaking else { return }
            switch reply {
            case .error(let message)?:
                self.dropConnection(reason: "SELECT \(self.dsn.db) failed: \(message)", level: .error)
            case nil:
                break // the link is going away; linkClosed handles it
            default:
                self.handshakeDone()
            }
        }
    }

    private func handshakeDone() {
        phase = .connected
        stalledTicks = 0
        failures = 0
        ticksUntilRetry = 0
        lastFailure = nil
        logger.info("registry: connected to Redis", metadata: ["group": "\(group)", "node": "\(nodeID)"])
        setConnected(true, notify: true)
        if deregistration != nil {
            sendGoodbye()
        } else {
            refresh()
        }
    }

    /// hiredis has freed (or is freeing) `link`'s context.
    private func linkClosed(_ link: RedisLink, error: String) {
        guard link === self.link else { return }
        self.link = nil
        let wasConnected = phase == .connected
        refreshInFlight = false
        if phase == .stopped { return }
        if wasConnected {
            logger.warning("registry: lost the Redis connection; keeping the last known members and retrying", metadata: ["error": "\(error)"])
            lastFailure = error
            failures = 1
            ticksUntilRetry = 0
            phase = .disconnected
            setConnected(false, notify: true)
        } else {
            connectFailed(error)
        }
        if deregistration != nil { finishDeregistration() }
    }

    /// A connect or handshake failed: back off (1, 2, 4, then 8 ticks between attempts; Redis, unlike a peer, is one server that may be overloaded).
    private func connectFailed(_ message: String, level: Logger.Level = .warning) {
        failures += 1
        ticksUntilRetry = min(1 << min(failures - 1, 3), 8) - 1
        phase = .disconnected
        if message != lastFailure {
            logger.log(level: level, "registry: cannot use Redis, retrying", metadata: ["error": "\(message)"])
            lastFailure = message
        } else {
            logger.debug("registry: Redis still unavailable", metadata: ["error": "\(message)", "failures": "\(failures)"])
        }
        if deregistration != nil { finishDeregistration() }
    }

    /// Gives up the current connection (timeout, AUTH/SELECT error) and
    /// schedules a retry under the usual backoff.
    private func dropConnection(reason: String, level: Logger.Level = .warning) {
        guard let link else { return }
        self.link = nil
        let wasConnected = phase == .connected
        refreshInFlight = false
        closeLink(link)
        if wasConnected {
            setConnected(false, notify: true)
        }
        connectFailed(reason, level: level)
    }

    /// Frees `link`'s context, unless we are inside one of its callbacks:
    /// then hiredis is using it, so the free waits for the end of the loop turn.
    private func closeLink(_ link: RedisLink) {
        if link.callbackDepth > 0 {
            loop.runAtEndOfTurn(RedisLinkCloser(link: link))
        } else {
            link.free()
        }
    }

    private func setConnected(_ connected: Bool, notify: Bool) {
        isConnected = connected
        if notify { onStateChange?(connected) }
    }

    // MARK: - Registry commands

    /// SET the per-node key first, then HSET: a member then never appears in
    /// the hash without its key, so nobody removes a node that is just starting.
    private func refresh() {
        guard phase == .connected, let link else { return }
        refreshInFlight = true
        stalledTicks = 0
        send(["SET", nodeKey(nodeID), advertise, "PX", String(nodeKeyTTL)], on: link) { [weak self] reply in
            self?.logIfError(reply, command: "SET")
        }
        send(["HSET", registryKey, nodeID, advertise], on: link) { [weak self] reply in
            guard let self else { return }
            self.logIfError(reply, command: "HSET")
            if let reply, case .error = reply { return }
            if reply != nil && !self.hasRegistered {
                self.hasRegistered = true
                self.onRegistered?()
            }
        }
        send(["HGETALL", registryKey], on: link) { [weak self] reply in
            guard let self, link === self.link else { return }
            guard let reply, case .array(let items) = reply else {
                if let reply { self.logIfError(reply, command: "HGETALL") }
                self.refreshInFlight = false
                return
            }
            var members: [String: String] = [:]
            var index = 0
            while index + 1 < items.count {
                if let id = items[index].text, let address = items[index + 1].text, id != self.nodeID {
                    members[id] = address
                }
                index += 2
            }
            self.checkLiveness(members, link: link)
        }
    }

    /// One MGET of every member's per-node key: a member whose key is gone
    /// was not refreshed for 3 ticks (crashed) and is HDEL'ed.
    private func checkLiveness(_ members: [String: String], link: RedisLink) {
        if members.isEmpty {
            refreshInFlight = false
            if deregistration == nil { onMembers?([:]) }
            return
        }
        let ids = Array(members.keys)
        send(["MGET"] + ids.map(nodeKey), on: link) { [weak self] reply in
            guard let self, link === self.link else { return }
            self.refreshInFlight = false
            guard let reply, case .array(let values) = reply, values.count == ids.count else {
                if let reply { self.logIfError(reply, command: "MGET") }
                return
            }
            var alive = members
            var expired: [String] = []
            for (id, value) in zip(ids, values) where value.isNull {
                expired.append(id)
                alive[id] = nil
            }
            if !expired.isEmpty {
                self.logger.info("registry: removing nodes whose key expired", metadata: ["nodes": "\(LogText.escape(expired.sorted().joined(separator: " "), limit: 1024))"])
                self.send(["HDEL", self.registryKey] + expired, on: link) { [weak self] reply in
                    self?.logIfError(reply, command: "HDEL")
                }
            }
            if self.deregistration == nil { self.onMembers?(alive) }
        }
    }

    /// The goodbye: HDEL self, DEL the per-node key; finishing on the second reply
    /// (or on the connection's end, which answers it with NULL).
    private func sendGoodbye() {
        guard let link else {
            finishDeregistration()
            return
        }
        send(["HDEL", registryKey, nodeID], on: link) { [weak self] reply in
            self?.logIfError(reply, command: "HDEL")
        }
        let sent = send(["DEL", nodeKey(nodeID)], on: link) { [weak self] reply in
            guard let self else { return }
            self.logIfError(reply, command: "DEL")
            if reply != nil { self.logger.info("registry: deregistered", metadata: ["node": "\(self.nodeID)"]) }
            self.finishDeregistration()
        }
        if !sent { finishDeregistration() }
    }

    private func finishDeregistration() {
        guard let goodbye = deregistration, !goodbye.finished else { return }
        goodbye.finished = true
        goodbye.timer?.stop()
        goodbye.timer = nil
        stop()
        goodbye.completion()
    }

    private func logIfError(_ reply: RedisValue?, command: String) {
        guard case .error(let message)? = reply else { return }
        if message != lastFailure {
            logger.warning("registry: \(command) failed", metadata: ["error": "\(message)"])
            lastFailure = message
        }
    }

    /// Queues one command (binary-safe argv) on `link`; `handler` runs exactly
    /// once: with the reply, or with nil when the connection goes away first.
    /// Returns false (and runs nothing) when hiredis refuses the command.
    @discardableResult
    private func send(_ arguments: [String], on link: RedisLink, handler: @escaping (RedisValue?) -> Void) -> Bool {
        guard let context = link.context else { return false }
        let box = Unmanaged.passRetained(RedisCommand(link: link, handler: handler))
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in arguments {
            offsets.append(bytes.count)
            lengths.append(argument.utf8.count)
            bytes.append(contentsOf: argument.utf8)
        }
        bytes.append(0) // never an empty buffer, so baseAddress is never nil
        let status: Int32 = bytes.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    redisAsyncCommandArgv(context, { _, reply, privdata in
                        guard let privdata else { return }
                        let command = Unmanaged<RedisCommand>.fromOpaque(privdata).takeRetainedValue()
                        let value = reply.map { RedisValue($0.assumingMemoryBound(to: redisReply.self)) }
                        command.complete(value)
                    }, box.toOpaque(), Int32(arguments.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                }
            }
        }
        if status != REDIS_OK {
            box.release()
            return false
        }
        return true
    }
}

/// One hiredis async context and the registry that owns it. hiredis's
/// callbacks find it through `redisAsyncContext.data`, which holds one retain
/// released exactly once, when hiredis frees the context (or we do).
final class RedisLink {
    /// Weak: a registry that went away just stops hearing from its context.
    weak var owner: RedisRegistry?
    /// nil once hiredis freed the context (or we did).
    var context: UnsafeMutablePointer<redisAsyncContext>?
    /// The retain stored in `context.data` is still outstanding.
    var retained = false
    /// > 0 while one of this context's callbacks runs: freeing it then would
    /// pull the context out from under hiredis.
    var callbackDepth = 0

    init(owner: RedisRegistry, context: UnsafeMutablePointer<redisAsyncContext>) {
        self.owner = owner
        self.context = context
    }

    func releaseRetain() {
        guard retained else { return }
        retained = false
        Unmanaged.passUnretained(self).release()
    }

    /// Frees the context outside its callbacks. A connected context runs its
    /// pending reply callbacks (NULL) and the disconnect callback inside
    /// `redisAsyncFree`; one still connecting runs none, so the retain is
    /// released here in both cases (idempotently).
    func free() {
        guard let context else { return }
        withExtendedLifetime(self) {
            redisAsyncFree(context)
            self.context = nil
            releaseRetain()
        }
    }
}

/// Frees a link's context at the end of the loop turn, when no hiredis
/// callback of it can be running.
private final class RedisLinkCloser: EndOfTurnTask {
    let link: RedisLink
    init(link: RedisLink) { self.link = link }
    override func runEndOfTurn() { link.free() }
}

/// Per-command `privdata`: the reply handler, retained for hiredis and released in its callback.
private final class RedisCommand {
    let link: RedisLink
    let handler: (RedisValue?) -> Void

    init(link: RedisLink, handler: @escaping (RedisValue?) -> Void) {
        self.link = link
        self.handler = handler
    }

    func complete(_ value: RedisValue?) {
        link.callbackDepth += 1
        handler(value)
        link.callbackDepth -= 1
    }
}

/// An in-flight `deregister`: its completion and its timeout.
private final class Deregistration {
    var completion: () -> Void
    var timer: LoopTimer?
    var finished = false
    init(completion: @escaping () -> Void) { self.completion = completion }
}

/// A Redis reply copied out of hiredis's `redisReply` (which hiredis frees as
/// soon as the callback returns).
enum RedisValue: Equatable {
    case string(String)
    case status(String)
    case error(String)
    case integer(Int)
    case null
    case array([RedisValue])

    init(_ reply: UnsafePointer<redisReply>) {
        let r = reply.pointee
        func text() -> String {
            guard let str = r.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: str, count: r.len), as: UTF8.self)
        }
        switch r.type {
        case REDIS_REPLY_STRING: self = .string(text())
        case REDIS_REPLY_STATUS: self = .status(text())
        case REDIS_REPLY_ERROR: self = .error(text())
        case REDIS_REPLY_INTEGER: self = .integer(Int(r.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { items.append(RedisValue(element)) } else { items.append(.null) }
            }
            self = .array(items)
        default: self = .null
        }
    }

    init(_ reply: UnsafeMutablePointer<redisReply>) { self.init(UnsafePointer(reply)) }

    /// The text of a bulk or status string.
    var text: String? {
        switch self {
        case .string(let s), .status(let s): return s
        default: return nil
        }
    }

    var isNull: Bool { self == .null }
}
