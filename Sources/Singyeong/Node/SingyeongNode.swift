import Glibc
import Logging

/// One Singyeong node: the loop, the listener and the process-level
/// behaviour (signals, graceful shutdown, certificate reload).
///
/// Construction does the blocking work (reading certificates, binding); after
/// `run()` starts the loop nothing blocks.
final class SingyeongNode {
    let settings: Settings
    let loop: EventLoop
    let logger: Logger
    let listener: Listener
    /// Clients, routing, authentication.
    let gateway: Gateway
    /// `/gateway/websocket`: the upgrade, then one `GatewaySession` per socket.
    let webSockets: WebSocketEndpoint
    /// What every HTTP connection on the client port serves: each endpoint
    /// gets the part of the node it needs (`RESTServiceConformances.swift`).
    private(set) lazy var restRoutes = RESTRoutes(
        clients: gateway, discovery: gateway, proxy: proxy, metricsText: self, readiness: self, queues: self, auth: gateway.auth,
        metrics: gateway.metrics, loop: loop, logger: logger, gatewaySocket: webSockets)
    /// `/api/v1/proxy`: target choice and the outgoing HTTP client.
    let proxy: ProxyService
    /// Present when CLUSTERING=true.
    private(set) var cluster: Cluster?
    /// The queues (memory or Redis; in a cluster, Redis with one owner per queue).
    private(set) var queues: QueueService?
    private var signals: [SignalWatcher] = []
    private var shutdownTimer: LoopTimer?
    private var shuttingDown = false
    private var running = false
    /// systemd readiness and watchdog (`Type=notify`); inert outside systemd.
    let notifier: SystemdNotifier
    private var watchdogTimer: LoopTimer?
    private var readyTimer: LoopTimer?
    /// How long READY=1 waits for the first registration (well under the
    /// unit's TimeoutStartSec=30s).
    static let registrationGrace: Double = 10

    /// `/readyz`: accepting clients, registered in the cluster when
    /// clustering, and not shutting down.
    var isReady: Bool {
        running && !shuttingDown && (cluster?.registry.hasRegistered ?? true)
    }

    init(settings: Settings) throws {
        self.settings = settings
        var logger = Logger(label: "singyeong")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        self.logger = logger
        notifier = SystemdNotifier(logger: logger)
        signal(SIGPIPE, SIG_IGN)
        SingyeongNode.raiseFileLimit(logger: logger)
        loop = EventLoop()
        gateway = Gateway(loop: loop, logger: logger, settings: settings)
        let webSocketLimits = WebSocketEndpoint.Limits(identifyMaxSize: settings.identifyMaxSize, maxFrameSize: settings.maxFrameSize,
                                                       identifyTimeout: settings.identifyTimeout, idleTimeout: settings.idleTimeout)
        webSockets = WebSocketEndpoint(loop: loop, logger: logger, limits: webSocketLimits) { [gateway] socket, connection, encoding in
            GatewaySession(gateway: gateway, socket: socket, connection: connection, encoding: encoding)
        }
        proxy = ProxyService(router: gateway.router, queryCache: gateway.queryCache, loop: loop, logger: logger, settings: settings)

        var tls: TLSContext?
        if let certificate = settings.tlsCertificate, let key = settings.tlsKey {
            do {
                tls = try TLSContext(certificatePath: certificate, keyPath: key)
            } catch {
                throw StartupError(description: "TLS: \(error.description)")
            }
        }
        let limits = TransportLimits(
            maxPendingBytes: settings.maxPendingBytes,
            handshakeTimeout: Double(settings.handshakeTimeout) / 1000,
            idleTimeout: Double(settings.idleTimeout) / 1000,
            lingerTimeout: 2,
            socketSendBuffer: settings.sendBufferSize
        )
        var makeHandler: () -> ConnectionHandler = { fatalError("node not ready") }
        listener = Listener(loop: loop, logger: logger, limits: limits, tlsContext: tls) { makeHandler() }
        let httpLimits = HTTPParserLimits(maxHeadSize: 16 * 1024, maxHeaderCount: 100, maxBodySize: settings.maxBodySize)
        makeHandler = { [unowned self] in HTTPConnectionHandler(application: self.restRoutes, limits: httpLimits, logger: self.logger) }
        do {
            try listener.bind(host: settings.bind, port: settings.port)
        } catch {
            throw StartupError(description: error.description)
        }
        if settings.clustering {
            let cluster = try Cluster(settings: settings, loop: loop, logger: logger, store: gateway.store, router: gateway.router,
                                      queryCache: gateway.queryCache, local: gateway, tls: tls)
            gateway.peers = cluster
            gateway.router.peers = cluster
            cluster.proxyRunner = proxy
            proxy.forwarding = cluster
            self.cluster = cluster
        }
        // Queues: in memory on one node (queues.md §7), or in Redis, where
        // a cluster keeps one owner per queue (the leases are held under
        // the node's cluster id, so peers can find the holder).
        let queueLimits = QueueService.Limits(
            ackTimeout: Int64(settings.queueAckTimeout), dlqTime: Int64(settings.queueDLQTime),
            gcInterval: Int64(settings.queueGCInterval), maxMessages: settings.queueMaxMessages,
            maxTargets: settings.queueMaxTargets, maxBytes: settings.queueMaxBytes, maxTotalBytes: settings.queueMaxTotalBytes)
        var queueStore: QueueStore = MemoryQueueStore()
        if settings.queueStore == "redis" {
            let dsn: RedisDSN
            do {
                dsn = try RedisDSN(parsing: settings.redisDSN)
            } catch {
                throw StartupError(description: "\(error)")
            }
            queueStore = RedisQueueStore(loop: loop, logger: logger, dsn: dsn, group: settings.clusterGroup,
                                         nodeID: cluster?.nodeID ?? PeerAuthentication.makeNodeID(),
                                         renewMilliseconds: settings.clusterTick)
        }
        let queues = QueueService(router: gateway.router, loop: loop, queryCache: gateway.queryCache, logger: logger,
                                  limits: queueLimits, store: queueStore, durable: settings.queueStore == "redis")
        queues.peers = cluster
        cluster?.queueHandler = queues
        gateway.queues = queues
        self.queues = queues
        // The bound ports (PORT=0 picks one): a proxied request must not loop back into them.
        var ownPorts: Set<Int> = [listener.boundPort]
        if let cluster { ownPorts.insert(cluster.listener.boundPort) }
        proxy.setOwnPorts(ownPorts)
    }

    /// Runs the loop until shutdown completes.
    func run() throws {
        signals = [
            SignalWatcher(loop: loop, signal: SIGTERM) { [unowned self] in self.shutDown(signal: "SIGTERM") },
            SignalWatcher(loop: loop, signal: SIGINT) { [unowned self] in self.shutDown(signal: "SIGINT") },
            SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] in self.reload() },
        ]
        logger.info("listening", metadata: [
            "bind": "\(settings.bind)", "port": "\(listener.boundPort)",
            "tls": "\(listener.tlsContext != nil)", "version": "\(SingyeongVersion.string)",
        ])
        running = true
        if let cluster {
            // READY=1 once listening and registered; but a node serves its own
            // clients (and, once linked, the cluster it sees) without the
            // registry (cluster.md §6), so if Redis cannot be reached within
            // `registrationGrace` it reports ready anyway rather than let
            // systemd fail the start. `/readyz` keeps waiting for registration.
            notifier.status("listening on port \(listener.boundPort); registering in Redis")
            var announced = false
            let announce: (String?) -> Void = { [unowned self] note in
                guard !announced, !self.shuttingDown else { return }
                announced = true
                self.readyTimer?.stop()
                self.readyTimer = nil
                self.notifier.ready(status: self.statusLine + (note ?? ""))
            }
            cluster.registry.onRegistered = { announce(nil) }
            let timer = LoopTimer(loop: loop) { [unowned self] in
                self.logger.warning("not registered in Redis yet; reporting ready to systemd anyway",
                                    metadata: ["after_s": "\(SingyeongNode.registrationGrace)"])
                announce("; Redis unreachable, serving what this node sees")
            }
            timer.start(after: SingyeongNode.registrationGrace)
            readyTimer = timer
            cluster.start()
        } else {
            notifier.ready(status: statusLine)
        }
        if let interval = notifier.watchdogInterval {
            // Keep-alives come from the loop itself: a stuck loop stops them
            // and systemd restarts the node.
            let timer = LoopTimer(loop: loop) { [unowned self] in
                self.notifier.watchdog()
                self.notifier.status(self.statusLine)
            }
            timer.start(after: interval, repeating: interval)
            watchdogTimer = timer
        }
        loop.run()
        proxy.shutdown()
        logger.info("stopped")
    }

    /// First signal: tell systemd STOPPING=1, stop accepting, ask every
    /// connection to finish (identified clients get GOODBYE and, 100 ms later,
    /// close 1001; other WebSockets close 1001; an HTTP answer still being
    /// computed goes out with `connection: close`), leave the registry, and
    /// exit when all that is done or after SHUTDOWN_TIMEOUT. A second signal
    /// exits at once.
    private func shutDown(signal name: String) {
        if shuttingDown {
            logger.warning("second \(name): exiting without waiting for connections to drain")
            exit(1)
        }
        shuttingDown = true
        notifier.stopping(status: "\(name): draining \(listener.connectionCount) connections")
        let open = listener.connectionCount
        logger.info("\(name): shutting down", metadata: ["connections": "\(open)", "drain_ms": "\(settings.shutdownTimeout)"])
        listener.stopAccepting()
        // The loop ends when the node has left the registry and its clients
        // are gone (and, clustered, its requests to peers were answered);
        // the shutdown timer bounds it all.
        var pendingSteps = cluster == nil ? 1 : 2
        let stepDone: () -> Void = { [unowned self] in
            pendingSteps -= 1
            if pendingSteps == 0 { self.loop.stop() }
        }
        var clientsGone: () -> Void = { [unowned self] in
            if let cluster = self.cluster { cluster.finishLeaving(completion: stepDone) } else { stepDone() }
        }
        if let queues {
            // The queues' leases go once the clients (and their ACKs) have.
            pendingSteps += 1
            let previous = clientsGone
            clientsGone = { queues.stop(completion: stepDone); previous() }
        }
        // Clients are asked to go only once every peer stopped choosing them
        // (lame duck): what peers routed to them before has arrived.
        let drainClients: () -> Void = { [unowned self] in
            self.listener.onAllClosed = clientsGone
            for connection in self.listener.liveConnections {
                connection.handler.connectionShouldShutDown(connection)
            }
            if self.listener.connectionCount == 0 {
                self.listener.onAllClosed = nil
                clientsGone()
            }
        }
        if let cluster {
            cluster.beginLeaving(registryLeft: stepDone, peersAcknowledged: drainClients)
        } else {
            drainClients()
        }
        shutdownTimer = LoopTimer(loop: loop) { [unowned self] in
            let left = self.listener.liveConnections
            self.logger.warning("drain time over; closing remaining connections", metadata: ["connections": "\(left.count)"])
            for connection in left { connection.abort(reason: "shutdown") }
            self.loop.stop()
        }
        shutdownTimer?.start(after: Double(settings.shutdownTimeout) / 1000)
    }

    /// SIGHUP: load the TLS certificate and key again for new connections.
    /// Existing connections keep their sessions; a bad file keeps the old pair.
    private func reload() {
        notifier.reloading()
        // READY=1 again after the reload, unless start-up has not announced it yet.
        defer { if !shuttingDown && readyTimer == nil { notifier.ready(status: statusLine) } }
        guard let certificate = settings.tlsCertificate, let key = settings.tlsKey else {
            logger.info("SIGHUP: nothing to reload (TLS not configured)")
            return
        }
        do {
            let context = try TLSContext(certificatePath: certificate, keyPath: key)
            listener.tlsContext = context
            cluster?.listener.tlsContext = context
            logger.info("SIGHUP: TLS certificate reloaded", metadata: ["cert": "\(certificate)"])
        } catch {
            logger.error("SIGHUP: TLS reload failed, keeping the previous certificate", metadata: ["reason": "\(error.description)"])
        }
    }

    /// One line for `systemctl status`.
    var statusLine: String {
        var line = "\(gateway.store.count) clients, \(listener.connectionCount) connections on port \(listener.boundPort)"
        if let cluster {
            line += ", \(cluster.links.values.filter { $0.isUp }.count) peers"
            if !cluster.registry.hasRegistered { line += ", not yet registered in Redis" }
        }
        return line
    }

    /// Idle connections are cheap, descriptors are the limit: use all we may.
    private static func raiseFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
                logger.warning("could not raise the open-file limit", metadata: ["max": "\(limit.rlim_max)"])
            }
        }
    }
}
