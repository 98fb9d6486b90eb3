import Logging

/// The REST routes (rest.md §1): the `HTTPApplication` of the client port.
/// Only what exists in this build is routed; every other path and method
/// gets the spec's 404 body, without authorization (§5). The gateway path
/// leaves HTTP through `gatewaySocket` (the WebSocket endpoint).
///
/// Each endpoint gets only the service it needs (`RESTServices.swift`).
/// The node owns the routes and everything they hold, so all of it is held
/// `unowned`.
final class RESTRoutes: HTTPApplication {
    unowned let clients: ClientQueryService
    unowned let discovery: ApplicationDiscoveryService
    unowned let proxy: ProxyExchangeService
    unowned let metricsText: MetricsTextService
    unowned let readiness: ReadinessService
    unowned let queues: QueueInspectionService
    unowned let auth: RESTAuthenticator
    /// Counts `/api/v1/proxy` answers by status.
    unowned let metrics: Metrics
    /// The clock of the authentication windows.
    unowned let loop: EventLoop
    let logger: Logger
    /// `/gateway/websocket`: the WebSocket upgrade.
    unowned let gatewaySocket: HTTPUpgrade

    init(clients: ClientQueryService, discovery: ApplicationDiscoveryService, proxy: ProxyExchangeService,
         metricsText: MetricsTextService, readiness: ReadinessService, queues: QueueInspectionService, auth: RESTAuthenticator,
         metrics: Metrics, loop: EventLoop, logger: Logger, gatewaySocket: HTTPUpgrade) {
        self.clients = clients
        self.discovery = discovery
        self.proxy = proxy
        self.metricsText = metricsText
        self.readiness = readiness
        self.queues = queues
        self.auth = auth
        self.metrics = metrics
        self.loop = loop
        self.logger = logger
        self.gatewaySocket = gatewaySocket
    }

    /// `/gateway/websocket` or `/gateway/websocket/` (protocol.md §1.2).
    static func isGatewayPath(_ buffer: UnsafeRawBufferPointer, _ path: Range<Int>) -> Bool {
        matches(buffer, path, "/gateway/websocket") || matches(buffer, path, "/gateway/websocket/")
    }

    func upgrade(for head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> HTTPUpgrade? {
        RESTRoutes.isGatewayPath(buffer, head.path) ? gatewaySocket : nil
    }

    /// The response now, or nil when it will come through `later` (a query
    /// that waits for peer nodes).
    /// `onCancel` receives what to do if the caller goes away before a
    /// later response (abort the upstream request of a proxy call).
    func respond(to head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                 peer: PeerAddress, later: @escaping (HTTPResponse) -> Void,
                 onCancel: (@escaping () -> Void) -> Void) -> HTTPResponse? {
        let method = head.method, path = head.path
        if method == .get || method == .head {
            if Self.matches(buffer, path, "/api/version") {
                return .json(200, "{\"api\":\"v1\",\"singyeong\":\(JSONText.quoted(SingyeongVersion.string))}")
            }
            // Probes for load balancers and orchestrators: no authorization.
            if Self.matches(buffer, path, "/healthz") {
                return .json(200, "{\"status\":\"ok\"}")
            }
            if Self.matches(buffer, path, "/readyz") {
                return readiness.isReady ? .json(200, "{\"status\":\"ready\"}") : .json(503, "{\"status\":\"not ready\"}")
            }
            if Self.matches(buffer, path, "/metrics") {
                if let refusal = authorize(head: head, in: buffer, peer: peer, allowBearer: true) { return refusal }
                return HTTPResponse(status: 200, headers: [("content-type", MetricsExposition.contentType)],
                                    body: Array(metricsText.metricsText().utf8))
            }
            if Self.matches(buffer, path, "/") || path.isEmpty {
                var response = HTTPResponse(status: 302, headers: [("location", "/gateway/websocket"), ("content-type", "text/html; charset=utf-8")])
                response.body = Array("<html><body>You are being <a href=\"/gateway/websocket\">redirected</a>.</body></html>".utf8)
                return response
            }
        }
        if method == .post && Self.matches(buffer, path, "/api/v1/query") {
            if let refusal = authorize(head: head, in: buffer, peer: peer) { return refusal }
            return RESTQuery.respond(clients: clients, head: head, in: buffer, body: body, later: later)
        }
        if method == .post && Self.matches(buffer, path, "/api/v1/proxy") {
            if let refusal = authorize(head: head, in: buffer, peer: peer) {
                metrics.countProxyResponse(status: refusal.status)
                return refusal
            }
            return RESTProxy.respond(proxy: proxy, metrics: metrics, head: head, in: buffer, body: body, peer: peer,
                                     later: later, onCancel: onCancel)
        }
        if method == .get && Self.matches(buffer, path, "/api/v1/queues") {
            if let refusal = authorize(head: head, in: buffer, peer: peer) { return refusal }
            return RESTQueues.respondList(queues: queues)
        }
        if method == .get && Self.hasPrefix(buffer, path, RESTQueues.prefix) {
            if let refusal = authorize(head: head, in: buffer, peer: peer) { return refusal }
            let name = path.lowerBound + RESTQueues.prefix.utf8CodeUnitCount
            return RESTQueues.respondOne(queues: queues, encodedName: UnsafeRawBufferPointer(rebasing: buffer[name..<path.upperBound]))
        }
        if method == .get && Self.matches(buffer, path, "/api/v1/discovery/tags") {
            if let refusal = authorize(head: head, in: buffer, peer: peer) { return refusal }
            return RESTDiscovery.respond(discovery: discovery, head: head, in: buffer, later: later)
        }
        return Self.notFound
    }

    /// rest.md §2.1: the raw first `Authorization` header must equal AUTH
    /// (constant-time); unset AUTH allows everything. A wrong credential
    /// counts toward the same per-source limit as gateway passwords; a
    /// request with no `Authorization` header is a plain 401 and no strike.
    ///
    /// `allowBearer` (only `/metrics`): `Bearer <AUTH>` is accepted too,
    /// because Prometheus' `authorization` setting always sends a scheme.
    func authorize(head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, peer: PeerAddress,
                   allowBearer: Bool = false) -> HTTPResponse? {
        guard auth.isEnabled else { return nil }
        guard let value = head.firstValue(of: "authorization", in: buffer) else { return Self.notAuthorized }
        let now = loop.now
        if auth.isBlocked(peer, now: now) {
            logger.warning("REST request refused: too many failed authentication attempts", metadata: ["peer": "\(peer.host)"])
            return Self.notAuthorized
        }
        var credential = Array(UnsafeRawBufferPointer(rebasing: buffer[value]))
        if auth.matches(credential) { return nil }
        if allowBearer, credential.count > 7, credential[0..<7].map({ $0 | 0x20 }) == Array("bearer ".utf8) {
            credential.removeFirst(7)
            if auth.matches(credential) { return nil }
        }
        auth.recordFailure(peer, now: now)
        logger.info("REST request with a wrong password", metadata: ["peer": "\(peer.host)"])
        return Self.notAuthorized
    }

    static var notAuthorized: HTTPResponse { .json(401, "{\"status\":\"error\",\"error\":\"not authorized\"}") }

    /// rest.md §5: the same body for every unknown route and method.
    static var notFound: HTTPResponse { .json(404, "{\"code\":404,\"error\":\"not found\"}") }

    /// Exact byte comparison of a path with a literal.
    static func hasPrefix(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count >= literal.utf8CodeUnitCount else { return false }
        let bytes = literal.utf8Start
        for i in 0..<literal.utf8CodeUnitCount where buffer[range.lowerBound + i] != bytes[i] { return false }
        return true
    }

    static func matches(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let bytes = literal.utf8Start
        for i in 0..<range.count where buffer[range.lowerBound + i] != bytes[i] { return false }
        return true
    }
}
