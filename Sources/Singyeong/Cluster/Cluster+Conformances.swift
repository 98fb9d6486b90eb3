/// The cluster as routing and the gateway see it (Routing owns the protocols).
extension Cluster: PeerNetwork {
    func mayHaveCandidates(ofApplication application: String?) -> Bool {
        links.values.contains { $0.isUp && $0.mayHaveClients(of: application) }
    }
}

/// A peer link is the remote node a candidate names.
extension PeerLink: RemoteNode {}

/// The cluster forwards proxied requests to the nodes holding their targets.
extension Cluster: ProxyForwarding {}
