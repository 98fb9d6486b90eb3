/// The other nodes as the router and the gateway see them: where routed
/// messages and client events go when a client lives elsewhere, and the
/// announcement of a new application before its first client is ready. The
/// cluster is the one conformer; Routing owns the protocol so that Gateway
/// and Cluster, on one layer, never name each other.
protocol PeerNetwork: PeerCandidates {
    /// Sends `message` to clients `handles` of `node`.
    func deliver(_ message: RoutedMessage, to node: RemoteNode, handles: [UInt64])
    /// Sends query and message to `node`, which resolves and delivers there;
    /// `completion` gets how many clients it delivered to (0 on silence).
    func forward(_ message: RoutedMessage, query encodedQuery: UnsafeRawBufferPointer, all: Bool, to node: RemoteNode,
                 completion: @escaping (Int) -> Void)
    /// CLIENT_CONNECTED / CLIENT_DISCONNECTED for the peers' subscribers.
    func broadcastEvent(_ event: StaticString, application: String)
    /// Whether the first client of `application` must wait for peers to
    /// learn of it before READY.
    func mustAnnounce(_ application: String) -> Bool
    /// Announces `application`; `completion` runs once peers acknowledged
    /// (or the deadline passed).
    func announceNewApplication(_ application: String, completion: @escaping () -> Void)
    /// Withdraws an announced application that no local client uses.
    func withdrawIfUnused(_ application: String)
    /// Applications with a non-restricted client holding every tag in
    /// `tags`: `local` (this node's) and every visible peer's.
    func gatherTags(_ tags: [String], local: Set<String>, completion: @escaping (Set<String>) -> Void)
}

/// What the cluster asks of this node's gateway: delivering to its own
/// clients (a message or an event from a peer). The gateway is the one
/// conformer.
protocol LocalDelivery: AnyObject {
    /// Delivers a routed message to local clients.
    func deliverLocally(_ message: RoutedMessage, to recipients: [ClientRecord])
    /// The event with `{"app": id}` to this node's subscribers.
    func announceLocally(event: StaticString, application: String)
}
