import Logging

/// `POST /api/v1/proxy` end to end (rest.md §4, cluster.md §4.5): choose one
/// client with the cluster-wide query exactly as SEND does (uniform over all
/// matching non-restricted clients, or by `key`), then run the upstream
/// request on the node that holds that client — here through the
/// `UpstreamClient`, or on a peer through the link, whose answer is relayed.
final class ProxyService {
    /// Chooses the target (the gateway's router: the same choice as SEND).
    let router: Router
    /// Compiled targets, shared with the gateway (request validation).
    let queryCache: QueryCache
    let upstream: UpstreamClient
    let logger: Logger
    /// The nodes holding remote targets; set when clustering.
    weak var forwarding: ProxyForwarding?

    init(router: Router, queryCache: QueryCache, loop: EventLoop, logger: Logger, settings: Settings) {
        self.router = router
        self.queryCache = queryCache
        self.logger = logger
        upstream = UpstreamClient(loop: loop, logger: logger, totalTimeoutMilliseconds: settings.proxyTimeout,
                                  maxResponseBodyBytes: settings.proxyMaxResponseSize,
                                  egress: EgressPolicy(deny: settings.proxyDeny, bindAddress: IPAddress(settings.bind)),
                                  maxBufferedBytes: settings.proxyMaxBufferedBytes,
                                  maxPendingLookups: settings.proxyMaxPendingLookups)
    }

    /// The ports this node listens on, once bound: upstream connections to
    /// them on any local address are refused (a request looping into this node).
    func setOwnPorts(_ ports: Set<Int>) {
        upstream.egress.ownPorts = ports
    }

    /// Chooses the target and runs the request; `completion` gets the
    /// caller's response (now or later, on the loop). The returned exchange
    /// is cancelled when the caller goes away: the upstream request is then
    /// not started, or aborted (here, or on the peer running it).
    @discardableResult
    func handle(_ request: ProxyRequest, callerIP: String, completion: @escaping (HTTPResponse) -> Void) -> ProxyExchange {
        let exchange = ProxyExchange()
        let router = self.router
        request.encodedQuery.withUnsafeBytes { encoded in
            router.resolve(request.query, encoded: encoded, purpose: .one) { [weak self] candidates in
                guard let self, !exchange.isCancelled else { return }
                switch candidates.first?.location {
                case .here(let record):
                    exchange.transfer = self.execute(request.method, route: request.route, headers: request.headers,
                                                     body: request.body, on: record, callerIP: callerIP, completion: completion)
                case .peer(let node, let handle):
                    guard let forwarding = self.forwarding else { return completion(ProxyRequest.error("no matches")) }
                    let forwarded = ForwardedProxyRequest(method: request.method, route: request.route, headers: request.headers, body: request.body)
                    let id = forwarding.forwardProxy(forwarded, handle: handle, callerIP: callerIP, to: node) { outcome in
                        switch outcome {
                        case .relayed(let status, let headers, let body):
                            completion(ProxyResponse.relay(status: status, headers: headers, body: body))
                        case .failed(let reason, let status):
                            completion(ProxyRequest.error(reason, status: status))
                        }
                    }
                    if let id { exchange.onCancel = { [weak forwarding] in forwarding?.cancelForwardedProxy(id) } }
                case nil:
                    completion(ProxyRequest.error("no matches"))
                }
            }
        }
        return exchange
    }

    /// Runs the upstream request for a client of this node (§4.4–§4.6).
    @discardableResult
    func execute(_ method: String, route: String, headers: [(String, String)], body: [UInt8]?, on record: ClientRecord,
                 callerIP: String, completion: @escaping (HTTPResponse) -> Void) -> UpstreamTransfer? {
        guard let address = record.socketIP else {
            // Restricted clients are never candidates; kept as a guard.
            completion(ProxyRequest.error("no matches"))
            return nil
        }
        let url = UpstreamURL.build(address: address, route: route)
        var sent = headers
        sent.append(("X-Forwarded-For", callerIP))
        let request = UpstreamRequest(method: method, url: url, headers: sent, body: body)
        // Logged without the query string, which may carry secrets.
        let logged = url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
        let client = "\(record.applicationID)/\(record.clientID)"
        return upstream.perform(request) { [logger] result in
            switch result {
            case .success(let response):
                guard response.status >= 200 else {
                    // A 1xx as the final answer cannot be relayed (no body framing).
                    completion(ProxyRequest.error("upstream answered \(response.status) as its final status", status: 502))
                    return
                }
                completion(ProxyResponse.relay(status: response.status, headers: response.headers, body: response.body))
            case .failure(let failure):
                // An overload (a node-wide bound reached) is the operator's business.
                logger.log(level: failure.isOverload ? .warning : .info, "proxy upstream failed", metadata: [
                    "url": "\(LogText.escape("\(method) \(logged)", limit: 512))", "reason": "\(failure.reason)",
                    "client": "\(LogText.escape(client))",
                ])
                completion(ProxyRequest.error(failure.reason, status: failure.isOverload ? 503 : 400))
            }
        }
    }

    func shutdown() { upstream.shutdown() }
}

/// One proxied request as the HTTP caller holds it: cancelled when the
/// caller disconnects, so no upstream work is done (or kept) for nobody.
final class ProxyExchange {
    private(set) var isCancelled = false
    /// The upstream request when it runs on this node.
    var transfer: UpstreamTransfer?
    /// Cancels the request on the peer running it.
    var onCancel: (() -> Void)?

    func cancel() {
        isCancelled = true
        transfer?.cancel()
        transfer = nil
        onCancel?()
        onCancel = nil
    }
}
