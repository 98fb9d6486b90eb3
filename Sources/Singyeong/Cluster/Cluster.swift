import CSystem
import Glibc
import Logging

/// This node's view of the cluster (cluster.md): its identity, the Redis
/// registry, the peer links, and the scatter/gather of queries.
///
/// Membership comes from the registry; visibility comes from links: only
/// nodes with an authenticated, healthy link are asked anything, so a
/// partitioned node simply routes over what it can reach. Of two nodes the
/// one with the smaller id dials, so a pair has one link. A dial that fails
/// removes the member from the registry ("if I can't reach you, you're
/// gone"); a live node puts itself back on its next tick.
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
    private(set) var links: [String: PeerLink] = [:]
    private var dialing: [String: PeerLink] = [:]
    private var members: [String: String] = [:]
    /// Failed dials per node and the tick before which it is not dialed
    /// again: 1, 2, 4, 8 ticks (capped), reset once a link comes up.
    private var dialFailures: [String: (count: Int, notBefore: Double)] = [:]
    private var tickTimer: LoopTimer?
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
    private var scratch: [UInt8] = []
    /// Failed handshakes' log lines, rate-limited per source.
    private var handshakeFailures = HandshakeFailureLog()

    /// Visible peers (authenticated links), for routing.
    var peers: Dictionary<String, PeerLink>.Values { links.values }
    var linkTimeoutDescription: String { "\(Int(tickSeconds * 3000)) ms" }

    /// Client context for dialing peers when TLS is configured.
    private let dialTLS: TLSContext?

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
                                     handshakeTimeout: Double(settings.handshakeTimeout) / 1000,
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
        advertise = try settings.clusterAdvertise ?? Cluster.defaultAdvertise(port: port)
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
        dsn.host = try Cluster.resolve(dsn.host)
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
        registry.onMembers = { [unowned self] in self.membersChanged($0) }
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

    /// Graceful shutdown: leave the registry, close links.
    func stop(completion: @escaping () -> Void) {
        tickTimer?.stop()
        listener.stopAccepting()
        for link in links.values { link.connection?.closeAfterFlush(reason: "shutdown") }
        registry.deregister(timeout: 1) { [unowned self] in
            self.registry.stop()
            completion()
        }
    }

    /// The first non-loopback IPv4 address of this host with our port
    /// (cluster.md §8.2), or loopback when there is none.
    private static func defaultAdvertise(port: Int) throws -> String {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return "127.0.0.1:\(port)" }
        defer { freeifaddrs(head) }
        var cursor = head
        while let entry = cursor {
            if let addr = entry.pointee.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET),
               entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 {
                var text = [CChar](repeating: 0, count: 64)
                addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
                }
                return "\(String(cString: text)):\(port)"
            }
            cursor = entry.pointee.ifa_next
        }
        return "127.0.0.1:\(port)"
    }

    // MARK: Membership and links

    private func membersChanged(_ members: [String: String]) {
        self.members = members
        let now = loop.now
        for (id, address) in members where id != nodeID && links[id] == nil && dialing[id] == nil && nodeID < id {
            if let failure = dialFailures[id], now < failure.notBefore { continue }
            dial(id, address)
        }
        // Forget backoff state of nodes that left the registry.
        for id in dialFailures.keys where members[id] == nil { dialFailures[id] = nil }
    }

    private func dial(_ id: String, _ address: String) {
        guard let (host, port) = Cluster.splitHostPort(address) else {
            logger.warning("registry entry with an unusable address", metadata: ["node": "\(LogText.escape(id))", "address": "\(LogText.escape(address))"])
            return
        }
        let link = PeerLink(cluster: self, outboundTo: id)
        var error = ""
        guard listener.dial(host: host, port: port, handler: link, tls: dialTLS, error: &error) != nil else {
            logger.warning("cannot dial peer", metadata: ["node": "\(LogText.escape(id))", "address": "\(LogText.escape(address))", "error": "\(error)"])
            registry.remove(nodeID: id)
            return
        }
        dialing[id] = link
    }

    /// A numeric address for `host` (itself when already numeric).
    private static func resolve(_ host: String) throws -> String {
        var hints = addrinfo()
        hints.ai_socktype = SY_SOCK_STREAM
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &result)
        guard rc == 0, let info = result else {
            throw StartupError(description: "REDIS_DSN: cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else {
            return host
        }
        return String(cString: text)
    }

    /// `host:port` or `[v6]:port`.
    static func splitHostPort(_ address: String) -> (String, Int)? {
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            let host = String(address[address.index(after: address.startIndex)..<close])
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port) else { return nil }
            return (host, port)
        }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        return (String(address[..<colon]), port)
    }

    func linkUp(_ link: PeerLink) {
        guard let id = link.peerNodeID else { return }
        if dialing[id] === link { dialing[id] = nil }
        dialFailures[id] = nil
        if let old = links[id], old !== link {
            // A reconnect raced the old link's failure detection: keep the new one.
            old.connection?.abort(reason: "replaced by a newer link")
        }
        links[id] = link
        logger.info("peer link up", metadata: ["node": "\(LogText.escape(id))", "outbound": "\(link.isOutbound)", "peers": "\(links.count)"])
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

    func linkClosed(_ link: PeerLink, wasUp: Bool, reason: String) {
        let id = link.peerNodeID ?? link.expectedNodeID
        if let id, dialing[id] === link { dialing[id] = nil }
        if let id, links[id] === link {
            links[id] = nil
            logger.warning("peer link down", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)", "peers": "\(links.count)"])
        }
        // Requests waiting on this link get nothing more from it.
        requests.linkLost(ObjectIdentifier(link), reason: reason)
        cancelServedProxies(for: link)
        if link.isOutbound && !wasUp, let id = link.expectedNodeID {
            let count = (dialFailures[id]?.count ?? 0) + 1
            dialFailures[id] = (count, loop.now + tickSeconds * Double(1 << min(count - 1, 3)))
            logger.info("peer unreachable; removing it from the registry", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)", "failures": "\(count)"])
            registry.remove(nodeID: id)
        }
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

    /// Every tick: ping each link with our client count, then balance.
    private func tick() {
        for summary in handshakeFailures.expire(now: loop.now) {
            logger.warning("more failed peer handshakes (not logged one by one)", metadata: [
                "source": "\(summary.source)", "failures": "\(summary.suppressed)",
                "seconds": "\(Int(handshakeFailures.interval))", "last_reason": "\(summary.lastReason)",
            ])
        }
        let body = PingMessage(clientCount: Int64(store.count)).bytes
        for link in links.values { link.sendPing(body: body) }
        if loadBalance { balance() }
    }

    /// cluster.md §5: skipped while any visible peer's count is unknown or stale.
    private func balance() {
        guard !links.isEmpty else { return }
        let now = loop.now
        var counts: [Int] = []
        for link in links.values {
            guard let n = link.reportedClientCount, now - link.reportedAt <= 2 * tickSeconds else { return }
            // A peer's word, bounded so the arithmetic cannot overflow.
            counts.append(min(max(n, 0), 100_000_000))
        }
        let excess = LoadBalancer.excess(local: store.count, peers: counts)
        guard excess > 0 else { return }
        var newest: [ClientRecord] = []
        store.forEachClient { newest.append($0) }
        newest.sort { $0.handle > $1.handle }
        logger.info("load balancing: sending GOODBYE", metadata: ["clients": "\(excess)", "local": "\(store.count)", "peers": "\(counts)"])
        for record in newest.prefix(excess) { record.session?.goodbyeForLoadBalancing() }
    }

    // MARK: Scatter / gather (query.md §10, cluster.md §4)

    /// A query waiting for peers.
    final class PendingQuery: PeerRequestTable.Request {
        var matches: [Candidate] = []
        var fallback: [Candidate] = []
        let logger: Logger
        let completion: (_ matches: [Candidate], _ fallback: [Candidate]) -> Void

        init(logger: Logger, completion: @escaping ([Candidate], [Candidate]) -> Void) {
            self.logger = logger
            self.completion = completion
        }

        override func ended(_ ending: PeerRequestTable.Ending) {
            if ending == .deadline, !waiting.isEmpty {
                logger.info("cluster query deadline passed; counting silent nodes as empty", metadata: ["missing": "\(waiting.count)"])
            }
            completion(matches, fallback)
        }
    }

    /// Sends `query` (its encoded bytes in `encoding`) to every visible peer
    /// and calls `completion` with their matches (and, when `withFallback`,
    /// the base-filter clients of peers that had no match) once all answered
    /// or CLUSTER_QUERY_TIMEOUT_MS passed. Without peers nothing is sent and
    /// `completion` is not called: the caller checks `peers` first.
    func scatter(encodedQuery: UnsafeRawBufferPointer, encoding: PayloadEncoding, application: String?, descriptors: Bool,
                 withFallback: Bool, completion: @escaping ([Candidate], [Candidate]) -> Void) {
        let id = requests.makeID()
        let body = QueryMessage(encoding: encoding, query: encodedQuery, descriptors: descriptors, withFallback: withFallback).bytes
        // Peers known to have no client of the application cannot match
        // (nor fall back: optional keeps the application filter).
        let asked = links.values.filter { $0.isUp && $0.mayHaveClients(of: application) }
        let query = PendingQuery(logger: logger, completion: completion)
        requests.start(query, id: id, waitingFor: Set(asked.map { ObjectIdentifier($0) }), deadlines: queryDeadlines)
        for link in asked where link.isUp { link.sendBatched(.query, requestID: id, body: body) }
        requests.endIfComplete(query)
    }

    /// A peer asks: run the query on our clients.
    func answerQuery(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let message = QueryMessage(tape: tape, body: body) else { return }
        let result = compileQuery(message.query, encoding: message.encoding)
        guard case .success(let query) = result else {
            // The asking node validated it; a mismatch means different versions.
            link.sendBatched(.queryResult, requestID: requestID,
                             body: QueryResultMessage(matches: [], fallback: [], descriptors: false).bytes)
            return
        }
        let matches = router.collectLocalCandidates(query, ignoringOps: false)
        let fallback = message.withFallback && matches.isEmpty ? router.collectLocalCandidates(query, ignoringOps: true) : []
        let body = QueryResultMessage(matches: matches, fallback: fallback, descriptors: message.descriptors).bytes
        link.sendBatched(.queryResult, requestID: requestID, body: body)
    }

    /// A peer's answer to one of our queries.
    func receiveQueryResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let query = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingQuery.self) else { return }
        let answer = QueryResultMessage(tape: tape, body: body, node: link)
        query.matches.append(contentsOf: answer.matches)
        query.fallback.append(contentsOf: answer.fallback)
        requests.endIfComplete(query)
    }

    // MARK: Delivery across nodes

    /// One `deliver` carrying all of a peer's recipients of a message.
    func deliver(_ message: RoutedMessage, to node: RemoteNode, handles: [UInt64]) {
        // Every RemoteNode is a PeerLink: candidates come from this cluster.
        guard let link = node as? PeerLink else { return }
        // One frame per chunk of recipients, so even a huge fan-out stays
        // under the peer's frame-body limit (payload ≤ MAX_FRAME_SIZE, plus
        // 9 bytes per handle within the 1 MiB allowance).
        let chunk = 100_000
        if handles.count > chunk {
            var start = 0
            while start < handles.count {
                deliver(message, to: link, handles: Array(handles[start..<min(start + chunk, handles.count)]))
                start += chunk
            }
            return
        }
        let body = DeliverMessage(event: message.event, encoding: message.encoding, nonce: message.nonce,
                                  payload: message.payload, handles: handles).bytes
        link.send(.deliver, body: body)
    }

    /// A peer routed a message to some of our clients.
    func receiveDeliver(from link: PeerLink, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let message = DeliverMessage(tape: tape, body: body) else { return }
        var recipients: [ClientRecord] = []
        for handle in message.handles {
            if let record = store.record(handle: handle) { recipients.append(record) }
        }
        guard !recipients.isEmpty else { return }
        deliverPieces(event: message.event, encoding: message.encoding, nonce: message.nonce, payload: message.payload,
                      to: recipients)
    }

    /// Delivers a message that arrived from a peer to local `recipients`.
    /// The pieces stay where they are (slices of the frame body, see
    /// `PeerPiece`) when every recipient shares their encoding; transcoding
    /// decodes them, so then they are first copied into padded storage.
    private func deliverPieces(event: StaticString, encoding: PayloadEncoding, nonce: UnsafeRawBufferPointer?,
                               payload: UnsafeRawBufferPointer, to recipients: [ClientRecord]) {
        let message = RoutedMessage(event: event, encoding: encoding, nonce: nonce, payload: payload)
        if recipients.allSatisfy({ $0.encoding == encoding }) {
            local.deliverLocally(message, to: recipients)
        } else {
            OwnedRoutedMessage(copying: message).withMessage { self.local.deliverLocally($0, to: recipients) }
        }
    }

    // MARK: Forwarded routing (one candidate node)

    /// A forwarded SEND/BROADCAST waiting for its `routeResult`: the number
    /// of clients the peer delivered to (0 if it stays silent or its link
    /// drops: it then counts as having no match).
    final class PendingRoute: PeerRequestTable.Request {
        var delivered = 0
        let completion: (_ delivered: Int) -> Void
        init(completion: @escaping (Int) -> Void) { self.completion = completion }
        override func ended(_ ending: PeerRequestTable.Ending) { completion(ending == .answered ? delivered : 0) }
    }

    /// The only peer that may hold candidates for `query`, when exactly one
    /// may (then resolving there alone gives the same answer as gathering:
    /// the union of candidates is that peer's set).
    func onlyPeer(for query: Query) -> RemoteNode? {
        var only: PeerLink?
        for link in links.values where link.isUp && link.mayHaveClients(of: query.application) {
            if only != nil { return nil }
            only = link
        }
        return only
    }

    /// Sends query and message to `link` in one frame; `completion` gets the
    /// number of clients the peer delivered to (0 after the deadline or if
    /// the link drops: the peer then counts as having no match).
    func forward(_ message: RoutedMessage, query encodedQuery: UnsafeRawBufferPointer, all: Bool, to node: RemoteNode,
                 completion: @escaping (Int) -> Void) {
        // Every RemoteNode is a PeerLink: it came from `onlyPeer`.
        guard let link = node as? PeerLink else { return completion(0) }
        let id = requests.makeID()
        let body = RouteMessage(event: message.event, encoding: message.encoding, all: all, query: encodedQuery,
                                nonce: message.nonce, payload: message.payload).bytes
        let pending = PendingRoute(completion: completion)
        requests.start(pending, id: id, waitingFor: [ObjectIdentifier(link)], deadlines: queryDeadlines)
        link.send(.route, requestID: id, body: body)
    }

    func receiveRouteResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingRoute.self) else { return }
        pending.delivered = Int(RouteResultMessage(tape: tape).delivered)
        requests.endIfComplete(pending)
    }

    /// A peer forwarded a message whose candidates can only be here: resolve
    /// locally (optional, selector, key, random pick — over what is, by the
    /// sender's reasoning, the whole candidate set) and deliver.
    func receiveRoute(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        var delivered = 0
        defer {
            link.send(.routeResult, requestID: requestID, body: RouteResultMessage(delivered: Int64(delivered)).bytes)
        }
        guard let message = RouteMessage(tape: tape, body: body),
              case .success(let query) = compileQuery(message.query, encoding: message.encoding) else { return }
        router.resolveLocally(query, purpose: message.all ? .all : .one) { candidates in
            let recipients = candidates.compactMap { $0.record }
            guard !recipients.isEmpty else { return }
            delivered = recipients.count
            // A JSON payload that is not a string: counted, not delivered (as ever).
            guard let payload = message.payload else { return }
            self.deliverPieces(event: message.event, encoding: message.encoding, nonce: message.nonce, payload: payload,
                               to: recipients)
        }
    }

    /// A query sent by a peer (JSON text in a string, or embedded MessagePack),
    /// through the compiled-query cache.
    private func compileQuery(_ bytes: UnsafeRawBufferPointer, encoding: PayloadEncoding) -> Result<Query, QueryError> {
        if encoding == .json {
            // The cache is keyed by the query text; only a miss copies it
            // into a padded buffer (simdjson reads past its input).
            return queryCache.query(for: bytes, tag: 0) {
                var padded = Array(bytes)
                let count = padded.count
                padded.append(contentsOf: repeatElement(0, count: InputBuffer.padding))
                return padded.withUnsafeBytes { raw in
                    var t = DocumentTape()
                    guard (try? JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), into: &t)) != nil, !t.isEmpty else {
                        return .failure(QueryError(detail: "undecodable"))
                    }
                    return Query.parse(t.value(t.root))
                }
            }
        }
        // Keyed by the embedded value's bytes; a miss decodes them again on
        // their own (they decoded once already, as part of the body).
        return queryCache.query(for: bytes, tag: 1) {
            var t = DocumentTape()
            guard (try? MessagePackTapeDecoder.decode(bytes, into: &t)) != nil, !t.isEmpty else {
                return .failure(QueryError(detail: "undecodable"))
            }
            return Query.parse(t.value(t.root))
        }
    }

    // MARK: Client events across nodes (protocol.md §8.10–8.11)

    func broadcastEvent(_ event: StaticString, application: String) {
        guard !links.isEmpty else { return }
        let body = EventMessage(event: event, application: application).bytes
        for link in links.values { link.send(.event, body: body) }
    }

    func receiveEvent(from link: PeerLink, tape: DocumentTape) {
        guard let message = EventMessage(tape: tape) else { return }
        local.announceLocally(event: message.event, application: message.application)
    }
}
