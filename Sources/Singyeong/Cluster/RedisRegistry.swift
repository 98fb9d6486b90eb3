import Logging

/// The node registry (cluster.md §2.5) in Redis.
///
/// Its own `RedisConnection` on the node's loop (never a blocking call).
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
    var isConnected: Bool { connection.isConnected }

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
    /// The registry's own connection (kept up, with backoff and stall
    /// detection, by `RedisConnection`).
    private let connection: RedisConnection
    private var started = false
    /// `onStateChange(true)` was the last report.
    private var reportedConnected = false
    /// A tick's HGETALL/MGET chain is still waiting for replies.
    private var refreshInFlight = false
    /// The last command failure logged at warning level; repeats are not logged.
    private var lastFailure: String?
    /// Set by `deregister`: no more ticks, the connection only serves the goodbye.
    private var deregistration: Deregistration?

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
        connection = RedisConnection(loop: loop, logger: logger, dsn: dsn, label: "registry",
                                     retryMilliseconds: self.tickMilliseconds)
        connection.onConnected = { [unowned self] in self.connected() }
        connection.onDisconnected = { [unowned self] _ in self.disconnected() }
    }

    deinit {
        timer?.stop()
        connection.onConnected = nil
        connection.onDisconnected = nil
    }

    /// The per-node key whose expiry tells other nodes that `id` crashed.
    func nodeKey(_ id: String) -> String { "singyeong:cluster:node:\(group):\(id)" }

    /// Connects and starts ticking (first refresh as soon as connected).
    func start() {
        guard !started, deregistration == nil else { return }
        started = true
        let timer = LoopTimer(loop: loop) { [unowned self] in self.tick() }
        self.timer = timer
        let interval = Double(tickMilliseconds) / 1000
        timer.start(after: interval, repeating: interval)
        connection.start()
    }

    /// Removes `nodeID` from the registry (HDEL), e.g. after its peer link failed (cluster.md: "if I can't reach you, you're gone").
    /// Best effort: without a Redis connection nothing is sent (the node's
    /// expiring key gets it removed anyway if it is really gone).
    func remove(nodeID id: String) {
        guard id != nodeID else { return }
        guard connection.isConnected else {
            logger.debug("registry: not connected, cannot remove node", metadata: ["node": "\(LogText.escape(id))"])
            return
        }
        connection.send(["HDEL", registryKey, id]) { [weak self] reply in
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
        if !started {
            finishDeregistration()
        } else if connection.isConnected {
            sendGoodbye()
        } else if !connection.isConnecting {
            // The connect's end sends the goodbye (or its failure finishes).
            connection.connectNow()
            if !connection.isConnecting { finishDeregistration() }
        }
    }

    /// Stops ticking and closes the connection without deregistering.
    func stop() {
        timer?.stop()
        timer = nil
        started = false
        refreshInFlight = false
        connection.stop()
    }

    // MARK: - Ticks

    private func tick() {
        guard connection.isConnected, !refreshInFlight else { return }
        refresh()
    }

    private func connected() {
        reportedConnected = true
        onStateChange?(true)
        if deregistration != nil {
            sendGoodbye()
        } else {
            refresh()
        }
    }

    private func disconnected() {
        refreshInFlight = false
        if reportedConnected {
            reportedConnected = false
            onStateChange?(false)
        }
        if deregistration != nil { finishDeregistration() }
    }

// MARK: - Registry commands

    /// SET the per-node key first, then HSET: a member then never appears in
    /// the hash without its key, so nobody removes a node that is just starting.
    private func refresh() {
        guard connection.isConnected else { return }
        refreshInFlight = true
        connection.send(["SET", nodeKey(nodeID), advertise, "PX", String(nodeKeyTTL)]) { [weak self] reply in
            self?.logIfError(reply, command: "SET")
        }
        connection.send(["HSET", registryKey, nodeID, advertise]) { [weak self] reply in
            guard let self else { return }
            self.logIfError(reply, command: "HSET")
            if let reply, case .error = reply { return }
            if reply != nil && !self.hasRegistered {
                self.hasRegistered = true
                self.onRegistered?()
            }
        }
        connection.send(["HGETALL", registryKey]) { [weak self] reply in
            guard let self else { return }
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
            self.checkLiveness(members)
        }
    }

    /// One MGET of every member's per-node key: a member whose key is gone
    /// was not refreshed for 3 ticks (crashed) and is HDEL'ed.
    private func checkLiveness(_ members: [String: String]) {
        if members.isEmpty {
            refreshInFlight = false
            if deregistration == nil { onMembers?([:]) }
            return
        }
        let ids = Array(members.keys)
        connection.send(["MGET"] + ids.map(nodeKey)) { [weak self] reply in
            guard let self else { return }
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
                self.connection.send(["HDEL", self.registryKey] + expired) { [weak self] reply in
                    self?.logIfError(reply, command: "HDEL")
                }
            }
            if self.deregistration == nil { self.onMembers?(alive) }
        }
    }

    /// The goodbye: HDEL self, DEL the per-node key; finishing on the second reply
    /// (or on the connection's end, which answers it with NULL).
    private func sendGoodbye() {
        connection.send(["HDEL", registryKey, nodeID]) { [weak self] reply in
            self?.logIfError(reply, command: "HDEL")
        }
        let sent = connection.send(["DEL", nodeKey(nodeID)]) { [weak self] reply in
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
}

/// An in-flight `deregister`: its completion and its timeout.
private final class Deregistration {
    var completion: () -> Void
    var timer: LoopTimer?
    var finished = false
    init(completion: @escaping () -> Void) { self.completion = completion }
}
