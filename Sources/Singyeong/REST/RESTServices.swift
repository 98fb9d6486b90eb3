// The services the REST endpoints need, one small protocol each, so that
// the routes get exactly what every endpoint uses instead of the whole
// node. REST owns them; the gateway, the proxy service, the password guard
// and the node implement them (the conformances live in Node, the only
// folder above all of those, so no folder names one on its own layer;
// issue 11).
//
// A `completion` may run before the call returns (nothing to wait for) or
// later on the loop (peers or an upstream answer first).

/// `POST /api/v1/query` (rest.md §3.2).
protocol ClientQueryService: AnyObject {
    /// The descriptors of the clients matching `query`, here and on every
    /// peer that may have some, as one JSON array. `value` is the query as a
    /// value: peers that must be asked get it as JSON text.
    func describeClients(matching query: Query, value: Value, completion: @escaping ([UInt8]) -> Void)
}

/// `GET /api/v1/discovery/tags` (rest.md §6).
protocol ApplicationDiscoveryService: AnyObject {
    /// The applications, here and on every visible peer, with at least one
    /// non-restricted client holding every tag in `tags` (not empty).
    func discoverApplications(withTags tags: [String], completion: @escaping (Set<String>) -> Void)
}

/// `POST /api/v1/proxy` (rest.md §4).
protocol ProxyExchangeService: AnyObject {
    /// Validates the merged request fields (§4.2) and starts the exchange:
    /// the validation failure to answer at once, or the started exchange,
    /// whose response (success or error) comes through `completion`.
    func startExchange(_ fields: ValueObject, callerIP: String,
                       completion: @escaping (HTTPResponse) -> Void) -> Result<RESTCancellable, HTTPResponse>
}

/// Work started for a REST caller that is dropped if the caller leaves
/// before the answer (a proxied request).
protocol RESTCancellable: AnyObject {
    func cancel()
}

/// `GET /metrics`: the Prometheus text exposition of the node.
protocol MetricsTextService: AnyObject {
    func metricsText() -> String
}

/// `GET /readyz`.
protocol ReadinessService: AnyObject {
    /// Accepting clients, registered in the cluster when clustering, and
    /// not shutting down.
    var isReady: Bool { get }
}

/// The password check of rest.md §2.1 with its brute-force limit, the same
/// one IDENTIFY uses (the gateway's `AuthGuard`).
protocol RESTAuthenticator: AnyObject {
    /// AUTH is set.
    var isEnabled: Bool { get }
    /// `candidate` is the password (constant-time).
    func matches(_ candidate: [UInt8]) -> Bool
    /// `peer` is over its failure budget for the current window.
    func isBlocked(_ peer: PeerAddress, now: Double) -> Bool
    /// Counts a wrong credential from `peer`.
    func recordFailure(_ peer: PeerAddress, now: Double)
}

/// `GET /api/v1/queues` and `GET /api/v1/queues/<name>` (issue 14).
protocol QueueInspectionService: AnyObject {
    /// Every queue this node holds; nil when queues are not available on
    /// this node.
    func queueSummaries() -> [QueueSummary]?
    /// One queue (zeros when it does not exist); nil when queues are not
    /// available on this node.
    func queueSummary(named name: String) -> QueueSummary?
    /// Where queue messages live (`memory` or `redis`) and whether that store
    /// can be written now; nil when queues are not available on this node.
    func queueStore() -> (kind: String, available: Bool)?
}

/// What the queue endpoints show of one queue.
struct QueueSummary {
    let name: String
    let queued: Int
    let unacked: Int
    let dead: Int
    let waiting: Int
    /// The node that holds the queue's lease in the store (its id); nil in
    /// memory mode (the queue is this process's) and while the queue is not
    /// loaded.
    let owner: String?
    /// The node holds the queue's state (false while it is being read from
    /// the store, or another node holds it).
    let loaded: Bool
    /// Milliseconds the oldest queued message has waited, nil when none is queued.
    let oldestQueuedAge: Int64?
}
