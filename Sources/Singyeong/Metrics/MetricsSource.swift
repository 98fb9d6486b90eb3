/// What `GET /metrics` reads from the running node at scrape time: the
/// counters, the version, and the gauges kept by their owners (listeners,
/// the client store, the proxy, the cluster).
///
/// Metrics owns this protocol and the node implements it, so the
/// exposition sees plain numbers rather than the node and the layers above
/// Metrics that hold them (issue 11, one-way layers).
protocol MetricsSource {
    /// The node's counters.
    var metrics: Metrics { get }
    /// The running binary's version (`singyeong_build_info`).
    var buildVersion: String { get }
    /// `/readyz`'s answer (`singyeong_ready`).
    var isReady: Bool { get }
    /// The client port's listener.
    var clientListenerGauges: ListenerGauges { get }
    /// Identified gateway clients on this node.
    var identifiedClientCount: Int { get }
    /// Upstream HTTP exchanges running for `/api/v1/proxy`.
    var upstreamTransfersInFlight: Int { get }
    /// nil when not clustering.
    var clusterGauges: ClusterGauges? { get }
    /// nil before the node wired its queues (the queues this node owns).
    var queueGauges: QueueGauges? { get }
}

/// Totals over every queue of the node (no label per queue name: names
/// are unbounded).
struct QueueGauges {
    var queued = 0, unacked = 0, dead = 0, waiting = 0, queues = 0
    var confirmed: UInt64 = 0, delivered: UInt64 = 0, redelivered: UInt64 = 0, acked: UInt64 = 0, deadLettered: UInt64 = 0
}

/// One listener's gauges and counters, as the exposition prints them.
struct ListenerGauges {
    var connections: Int
    var acceptedTotal: UInt64
    var bytesIn: UInt64
    var bytesOut: UInt64
    var slowConsumerDisconnects: UInt64
}

/// The cluster's gauges, present only when clustering.
struct ClusterGauges {
    /// The cluster port's listener.
    var listener: ListenerGauges
    /// Each authenticated, healthy peer link: the peer's node id (nil until
    /// its handshake named it) and the round trip of its last ping.
    var linksUp: [(nodeID: String?, roundTripSeconds: Double?)]
    var redisConnected: Bool
    var registered: Bool
}
