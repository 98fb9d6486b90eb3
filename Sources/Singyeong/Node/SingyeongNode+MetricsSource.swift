/// The node's side of `GET /metrics`: hands the exposition (in Metrics,
/// which must not see the node) its counters and the gauges read from the
/// listeners, the client store, the proxy and the cluster at scrape time.
extension SingyeongNode: MetricsSource {
    var metrics: Metrics { gateway.metrics }

    var buildVersion: String { SingyeongVersion.string }

    var clientListenerGauges: ListenerGauges { ListenerGauges(listener) }

    var identifiedClientCount: Int { gateway.store.count }

    var upstreamTransfersInFlight: Int { proxy.upstream.activeTransfers }

    var queueGauges: QueueGauges? {
        guard let queues else { return nil }
        var g = QueueGauges()
        for q in queues.queues.values {
            g.queued += q.queuedCount
            g.unacked += q.unackedCount
            g.dead += q.deadCount
            g.waiting += q.waiting.count
        }
        g.queues = queues.queues.count
        let c = queues.counters
        g.confirmed = c.confirmed
        g.delivered = c.delivered
        g.redelivered = c.redelivered
        g.acked = c.acked
        g.deadLettered = c.deadLettered
        return g
    }

    var clusterGauges: ClusterGauges? {
        guard let cluster else { return nil }
        return ClusterGauges(
            listener: ListenerGauges(cluster.listener),
            linksUp: cluster.links.values.filter { $0.isUp }.map { (nodeID: $0.peerNodeID, roundTripSeconds: $0.roundTripSeconds) },
            redisConnected: cluster.registry.isConnected,
            registered: cluster.registry.hasRegistered
        )
    }
}

extension ListenerGauges {
    /// A listener's current numbers.
    init(_ listener: Listener) {
        self.init(connections: listener.connectionCount, acceptedTotal: listener.acceptedTotal,
                  bytesIn: listener.bytesIn, bytesOut: listener.bytesOut,
                  slowConsumerDisconnects: listener.slowConsumerDisconnects)
    }
}
