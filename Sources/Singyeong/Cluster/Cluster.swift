import CSystem
import Glibc
import Logging

/// This node's view of the cluster (cluster.md): its identity and the
/// wiring of the mechanisms, each its own type — membership and dialing
/// (`PeerMembership`, fed by the `RedisRegistry`), application
/// announcements (`ApplicationAnnouncements`), requests waiting on peers
/// (`PeerRequestTable`), peer message bodies (`PeerMessages/`). What stays
/// here is what routing asks of the other nodes: scatter/gather of queries,
/// forwarded and delivered messages, client events (and, in
/// `Cluster+Proxy`, proxied requests and tag discovery), plus the tick.
final class Cluster {
    let nodeID = PeerAuthentication.makeNodeID()
    let cookie: String
    let advertise: String
    let logger: Logger
    /// This node's clients and their routing (Routing types shared with the gateway).
    let store: ClientStore
    let router: Router
    let queryCache: QueryCache
    /// Delivery to this node's own clients (the gateway).
    unowned let local: LocalDelivery
    let loop: EventLoop
    let listener: Listener
    let registry: RedisRegistry
    /// Largest peer frame body accepted: a message at MAX_FRAME_SIZE, a
    /// proxied request (MAX_BODY_SIZE) or response (PROXY_MAX_RESPONSE_SIZE),
    /// plus 1 MiB of envelope.
    let maxFrameBody: Int
    let tickSeconds: Double
    let loadBalance: Bool
    /// Who is in the cluster and which links are up; set at the end of
    /// init (it needs `self` as its transport).
    private(set) var membership: PeerMembership<Cluster>!
    /// Authenticated links by node id: the visible peers.
    var links: [String: PeerLink] { membership.links }
    private var tickTimer: LoopTimer?
    /// Set from SIGTERM on (`beginLeaving`).
    private(set) var isLeaving = false
    /// `finishLeaving`'s completion while requests are still answered.
    private var leftWhenIdle: (() -> Void)?
    /// Ticks so far: the clock of `goodbyeGrace`.
    private var tickCount = 0
    /// GOODBYEs sent and not yet seen at other nodes (cluster.md §5 without
    /// overshoot); 10 ticks at most, the fallback for clients that never
    /// show up elsewhere.
    private var goodbyeGrace = GoodbyeGrace(graceTicks: 10)
    let queryDeadlines: DeadlineQueue
    /// Everything sent to peers that waits for an answer: announcements,
    /// queries, forwarded routes (CLUSTER_QUERY_TIMEOUT_MS), proxied
    /// requests (PROXY_TIMEOUT plus a margin for the link), discovery.
    let requests = PeerRequestTable()
    /// Which applications peers know this node has (cluster.md §4.1); set
    /// at the end of init (it needs `self`).
    private(set) var announcements: ApplicationAnnouncements!
    let proxyDeadlines: DeadlineQueue
    /// Upstream requests this node runs for peers (cancelled with their link).
    var servedProxies: [ServedProxyKey: ProxyTransfer] = [:]
    /// Most proxied requests waiting on one peer (see init).
    let maxProxiesPerLink: Int
    /// Runs proxied requests that peers send here.
    weak var proxyRunner: LocalProxyRunner?
    /// The queue service, which reads and writes the queue frames' bodies.
    weak var queueHandler: QueuePeerHandler?
    /// Failed handshakes' log lines, rate-limited per source.
    private var handshakeFailures = HandshakeFailureLog()

    /// Visible peers (authenticated links), for routing.
    var peers: Dictionary<String, PeerLink>.Values { links.values }
    var linkTimeoutDescription: String { "\(Int(tickSeconds * 3000)) ms" }

    /// Client context for dialing peers when TLS is configured.
    let dialTLS: TLSContext?

    /// `tls`: the node's server context; when set, peer links use TLS too
    /// (the same certificate on the cluster port, TLS when dialing).
    init(settings: Settings, loop: EventLoop, logger: Logger, store: ClientStore, router: Router, queryCache: QueryCache,
         local: LocalDelivery, tls: TLSContext?) throws {
        guard let cookie = settings.cookie else { throw StartupError(description: "COOKIE must be set when CLUSTERING=true") }
        self.cookie = cookie
        self.loop = loop
        self.logger = logger
        self.store = store
        self.router = router
        self.queryCache = queryCache
        self.local = local
        tickSeconds = Double(settings.clusterTick) / 1000
        loadBalance = settings.loadBalance
        // A message, a proxied request body or a proxied response, plus envelope.
        // Nodes of one cluster are expected to share these limits.
        maxFrameBody = max(settings.maxFrameSize, settings.maxBodySize, settings.proxyMaxResponseSize) + 1 << 20
        proxyDeadlines = DeadlineQueue(loop: loop, duration: Double(settings.proxyTimeout) / 1000 + 5)
        queryDeadlines = DeadlineQueue(loop: loop, duration: Double(settings.clusterQueryTimeout) / 1000)
        let linkOutputBound = max(256 << 20, settings.maxPendingBytes * 4)
        // Proxied answers travel whole on the link: at most half its output
        // bound in flight to one peer, so big responses cannot reset it.
        maxProxiesPerLink = max(4, (linkOutputBound / 2) / (settings.proxyMaxResponseSize + 65536))
        let limits = TransportLimits(maxPendingBytes: linkOutputBound,
                                     // A link's handshake takes a round trip or two: 2 ticks
                                     // bound how long a dial into a cut (SYNs dropped) blocks
                                     // the next one, so a node that comes back is seen soon.
                                     handshakeTimeout: min(Double(settings.handshakeTimeout) / 1000, 2 * tickSeconds),
                                     idleTimeout: tickSeconds * 3, lingerTimeout: 2)
        var makeLink: () -> ConnectionHandler = { fatalError("cluster not ready") }
        listener = Listener(loop: loop, logger: logger, limits: limits, tlsContext: tls) { makeLink() }
        if tls != nil {
            do {
                dialTLS = try TLSContext(client: ())
            } catch {
                throw StartupError(description: "peer TLS: \(error.description)")
            }
        } else {
            dialTLS = nil
        }
        do {
            try listener.bind(host: settings.bind, port: settings.clusterPort)
        } catch {
            throw StartupError(description: "CLUSTER_PORT: \(error.description)")
        }
        let port = listener.boundPort
        advertise = settings.clusterAdvertise ?? NodeAddress.defaultAdvertise(port: port)
        var dsn: RedisDSN
        do {
            dsn = try RedisDSN(parsing: settings.redisDSN)
        } catch {
            throw StartupError(description: "\(error)")
        }
        if dsn.tls {
            throw StartupError(description: "REDIS_DSN: rediss:// is not supported by this build (hiredis 0.14 has no TLS)")
        }
        // hiredis resolves names with a blocking call inside its connect;
        // resolve once here, before the loop runs, and give it the address.
        dsn.host = try NodeAddress.numeric(dsn.host, setting: "REDIS_DSN")
        registry = RedisRegistry(loop: loop, logger: logger, dsn: dsn, group: settings.clusterGroup, nodeID: nodeID,
                                 advertise: advertise, tickMilliseconds: settings.clusterTick)
        makeLink = { [unowned self] in PeerLink(cluster: self, outboundTo: nil) }
        listener.tlsFailureHook = { [unowned self] connection, what, reason in
            if let link = connection.handler as? PeerLink, !link.isUp {
                self.logHandshakeFailure(link, connection: connection, reason: "\(what): \(reason)", wrongCookie: false)
            } else {
                self.logger.info("\(what)", metadata: ["peer": "\(connection.peer.description)", "reason": "\(reason)"])
            }
        }
        membership = PeerMembership(nodeID: nodeID, tickSeconds: tickSeconds, logger: logger, transport: self)
        registry.onMembers = { [unowned self] in self.membership.membersChanged($0, now: self.loop.now) }
        announcements = ApplicationAnnouncements(store: store, requests: requests, deadlines: queryDeadlines, logger: logger)
        announcements.cluster = self
        store.onApplicationRemoved = { [unowned self] in self.announcements.announceRemoved($0) }
    }

    /// Starts registering, dialing and pinging.
    func start() {
        logger.info("clustering", metadata: ["node": "\(nodeID)", "advertise": "\(advertise)", "tls": "\(dialTLS != nil)"])
        registry.start()
        tickTimer = LoopTimer(loop: loop) { [unowned self] in self.tick() }
        tickTimer?.start(after: tickSeconds, repeating: tickSeconds)
    }

    // MARK: Lame-duck shutdown

    /// A `leaving` announcement waiting for every peer's acknowledgement.
    final class PendingLeave: PeerRequestTable.Request {
        let completion: () -> Void
        init(completion: @escaping () -> Void) { self.completion = completion }
        override func ended(_ ending: PeerRequestTable.Ending) { completion() }
    }

    /// SIGTERM, first step (lame duck): leave the registry (`registryLeft`
    /// once Redis confirmed it, or after 1 s), stop dialing, balancing and
    /// accepting links, and tell every peer this node is leaving;
    /// `peersAcknowledged` runs once all of them stopped choosing its
    /// clients (or CLUSTER_QUERY_TIMEOUT_MS passed). Only then should the
    /// node send its clients away: whatever a peer routed to them before its
    /// acknowledgement has arrived by then, on the same ordered link. Links
    /// stay up (and pinged) until `finishLeaving`.
    func beginLeaving(registryLeft: @escaping () -> Void, peersAcknowledged: @escaping () -> Void) {
        isLeaving = true
        listener.stopAccepting()
        registry.deregister(timeout: 1) { [unowned self] in
            self.registry.stop()
            registryLeft()
        }
        let up = membership.allLinks.filter { $0.isUp }
        logger.info("leaving the cluster: telling peers", metadata: ["peers": "\(up.count)"])
        let id = requests.makeID()
        let pending = PendingLeave(completion: peersAcknowledged)
        requests.start(pending, id: id, waitingFor: Set(up.map { ObjectIdentifier($0) }), deadlines: queryDeadlines)
        for link in up { link.send(.leaving, requestID: id, body: []) }
        requests.endIfComplete(pending)
    }

    /// SIGTERM, last step, once this node's clients are gone: when nothing
    /// sent to peers waits for an answer any more (a SEND being gathered,
    /// a forwarded message, a proxied request) and no upstream request runs
    /// for a peer, close the links after flushing them and call
    /// `completion`. Checked now and then every tick; the node's shutdown
    /// timer bounds the wait.
    func finishLeaving(completion: @escaping () -> Void) {
        leftWhenIdle = completion
        closeLinksIfIdle()
    }

    private func closeLinksIfIdle() {
        guard let completion = leftWhenIdle, requests.count == 0, servedProxies.isEmpty else { return }
        leftWhenIdle = nil
        tickTimer?.stop()
        for link in membership.allLinks { link.close(reason: "shutdown") }
        completion()
    }

    func receiveLeavingAck(from link: PeerLink, requestID: UInt64) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingLeave.self) else { return }
        requests.endIfComplete(pending)
    }

    /// A peer is shutting down: its clients stop being candidates at once
    /// (`PeerLink.isLeaving`), and its node id is never dialed again.
    func peerLeaving(_ link: PeerLink) {
        guard let id = link.peerNodeID else { return }
        logger.info("peer leaving the cluster", metadata: ["node": "\(LogText.escape(id))"])
        membership.departed(id)
    }

    // MARK: Links

    /// A link finished its handshake.
    func linkUp(_ link: PeerLink) {
        guard membership.linkUp(link, now: loop.now) else { return }
        // Our applications, before anything else on this link, so the peer
        // can skip us for the others. Later changes follow on the same
        // ordered link, ahead of any message that could make them known.
        link.send(.applications, body: ApplicationsMessage(full: true, add: announcements.snapshot()).bytes)
    }

    /// Whether identifying the first client of `application` has to wait
    /// for peers to learn of it (some peer could otherwise skip us).
    func mustAnnounce(_ application: String) -> Bool { announcements.mustAnnounce(application) }

    /// See `ApplicationAnnouncements.announceNew`.
    func announceNewApplication(_ application: String, completion: @escaping () -> Void) {
        announcements.announceNew(application, completion: completion)
    }

    /// See `ApplicationAnnouncements.withdrawIfUnused`.
    func withdrawIfUnused(_ application: String) { announcements.withdrawIfUnused(application) }

    func receiveApplicationsAck(from link: PeerLink, requestID: UInt64) {
        announcements.receiveAck(from: link, requestID: requestID)
    }

    /// A link ended, before or after its handshake.
    func linkClosed(_ link: PeerLink, wasUp: Bool, reason: String) {
        membership.linkClosed(link, wasUp: wasUp, reason: reason, now: loop.now)
        // Requests waiting on this link get nothing more from it.
        requests.linkLost(ObjectIdentifier(link), reason: reason)
        cancelServedProxies(for: link)
        if wasUp, let node = link.peerNodeID, links[node] == nil { queueHandler?.queuePeerGone(node) }
    }

    /// Logs a failed handshake, at most one line per source a minute (see
    /// `HandshakeFailureLog`). The source of an accepted connection is its
    /// address; of a dial, the node we dialed (dials are paced by the
    /// registry and backoff, and one host may run several nodes). `reason`
    /// holds peer text only escaped.
    func logHandshakeFailure(_ link: PeerLink, connection: ConnectionContext, reason: String, wrongCookie: Bool) {
        let source = link.isOutbound ? "node \(LogText.escape(link.expectedNodeID ?? "?"))" : connection.peer.host
        let (key, log) = handshakeFailures.record(source: source, reason: reason, now: loop.now)
        guard log else { return }
        let message: Logger.Message = wrongCookie ? "peer authentication failed: wrong COOKIE?" : "peer handshake failed"
        logger.warning(message, metadata: [
            "peer": "\(connection.peer.description)", "node": "\(LogText.escape(link.peerNodeID ?? link.expectedNodeID ?? "?"))",
            "outbound": "\(link.isOutbound)", "reason": "\(reason)", "source": "\(key)",
        ])
    }

    /// Every tick: ping each link with our client count, close spent spare
    /// links, redial lost links while Redis is away, then balance.
    private func tick() {
        tickCount += 1
        for summary in handshakeFailures.expire(now: loop.now) {
            logger.warning("more failed peer handshakes (not logged one by one)", metadata: [
                "source": "\(summary.source)", "failures": "\(summary.suppressed)",
                "seconds": "\(Int(handshakeFailures.interval))", "last_reason": "\(summary.lastReason)",
            ])
        }
        let body = PingMessage(clientCount: Int64(store.count)).bytes
        for link in links.values { link.sendPing(body: body) }
        membership.tick(now: loop.now)
        if isLeaving {
            closeLinksIfIdle()
            return
        }
        // Without Redis nothing reports members: keep dialing the last ones
        // reported (same backoff), so a link lost in the outage comes back
        // with its peer instead of with Redis (cluster.md §6).
        if !registry.isConnected { membership.membersChanged(membership.members, now: loop.now) }
        if loadBalance { balance() }
    }

    /// cluster.md §5: skipped while any visible peer's count is unknown or
    /// stale; clients sent away on recent ticks count as still here
    /// (`GoodbyeGrace`).
    private func balance() {
        guard links.values.contains(where: { !$0.isLeaving }) else { return }
        let now = loop.now
        var counts: [Int] = []
        for link in links.values where !link.isLeaving {
            guard let n = link.reportedClientCount, now - link.reportedAt <= 2 * tickSeconds else { return }
            // A peer's word, bounded so the arithmetic cannot overflow.
            counts.append(min(max(n, 0), 100_000_000))
        }
        let excess = goodbyeGrace.goodbyes(tick: tickCount, local: store.count, peers: counts)
        guard excess > 0 else { return }
        var newest: [ClientRecord] = []
        store.forEachClient { newest.append($0) }
        newest.sort { $0.handle > $1.handle }
        logger.info("load balancing: sending GOODBYE", metadata: [
            "clients": "\(excess)", "local": "\(store.count)", "peers": "\(counts)",
            "in_flight": "\(goodbyeGrace.inFlight - excess)",
        ])
        for record in newest.prefix(excess) { record.session?.goodbyeForLoadBalancing() }
    }
}
