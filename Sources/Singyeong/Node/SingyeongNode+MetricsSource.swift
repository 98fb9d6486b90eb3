/// The node's side of `GET /metrics`: hands the exposition (in Metrics,
/// which must not see the node) its counters and the gauges read from the
/// listeners, the client store, the proxy and the cluster at scrape time.
extension SingyeongNode: MetricsSource {
    var metrics: Metrics { gateway.metrics }

    var buildVersion: String { SingyeongVersion.string }

    var clientListenerGauges: ListenerGauges { ListenerGauges(listener) }

    var identifiedClientCount: Int { gateway.store.count }

    var upstreamTransfersInFlight: Int { proxy.upstream.activeTransfers }

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
