/// The other nodes as the queue service sees them (issue 14 point 3): who
/// is reachable, and a channel for queue messages whose bodies the queue
/// service writes and reads itself (MessagePack maps). The cluster is the
/// one conformer and only carries the bytes; Routing owns the protocols so
/// that Queue and Cluster, on one layer, never name each other.
protocol QueuePeers: AnyObject {
    /// This node's id (what its queue leases are held under).
    var localNodeID: String { get }
    /// The ids of the peers with a link up (the live set rendezvous hashing
    /// chooses an owner from, with this node).
    var reachableNodeIDs: [String] { get }
    /// Whether any reachable peer may have a client of `application` (any
    /// at all when nil): a target with such a peer is not dead-lettered.
    func mayHaveClients(of application: String?) -> Bool
    /// Sends a request to `node`; `completion` runs exactly once, with the
    /// reply's decoded body, or nil when the link is down, goes down, or the
    /// peer stays silent for CLUSTER_QUERY_TIMEOUT_MS.
    func sendQueueRequest(_ body: [UInt8], to node: String, completion: @escaping (QueuePeerReply?) -> Void)
    /// Sends a message that has no answer; false when `node` is not reachable.
    @discardableResult
    func sendQueueMessage(_ body: [UInt8], to node: String) -> Bool
}

/// A decoded reply body, valid only inside the completion.
struct QueuePeerReply {
    let tape: DocumentTape
    let body: UnsafeRawBufferPointer
}

/// What the cluster hands the queue service: requests and messages from
/// peers (the decoded body, valid only during the call) and peers going
/// away.
protocol QueuePeerHandler: AnyObject {
    /// A request from `node`; `reply` must be called exactly once (now or
    /// later) with the reply body.
    func receiveQueueRequest(from node: String, tape: DocumentTape, body: UnsafeRawBufferPointer,
                             reply: @escaping ([UInt8]) -> Void)
    func receiveQueueMessage(from node: String, tape: DocumentTape, body: UnsafeRawBufferPointer)
    /// The link to `node` went down: its clients wait on nothing here.
    func queuePeerGone(_ node: String)
}
