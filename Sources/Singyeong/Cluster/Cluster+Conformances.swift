// The cluster and its links as the protocols of other types and layers
// see them (Routing owns PeerNetwork, RemoteNode and ProxyForwarding;
// PeerMembership owns MembershipTransport and MembershipLink).

/// The cluster as routing and the gateway see it.
extension Cluster: PeerNetwork {
    func mayHaveCandidates(ofApplication application: String?) -> Bool {
        links.values.contains { $0.isUp && $0.mayHaveClients(of: application) }
    }
}

/// A peer link is the remote node a candidate names.
extension PeerLink: RemoteNode {}

/// The cluster forwards proxied requests to the nodes holding their targets.
extension Cluster: ProxyForwarding {}

/// A peer link as membership tracks it.
extension PeerLink: MembershipLink {
    func abort(reason: String) { connection?.abort(reason: reason) }
    func close(reason: String) { connection?.closeAfterFlush(reason: reason) }
}

/// Dialing and the registry, as membership uses them.
extension Cluster: MembershipTransport {
    func dial(node: String, host: String, port: Int, error: inout String) -> PeerLink? {
        let link = PeerLink(cluster: self, outboundTo: node)
        return listener.dial(host: host, port: port, handler: link, tls: dialTLS, error: &error) != nil ? link : nil
    }

    func removeFromRegistry(_ node: String) { registry.remove(nodeID: node) }
}
