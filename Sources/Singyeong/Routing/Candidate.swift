/// A client that matched a query, wherever it lives: on this node (`record`)
/// or on a peer (`node` + `handle`, with the selector value and, for
/// listings, the descriptor the peer sent back).
struct Candidate {
    let applicationID: String
    let clientID: String
    /// The selector's value for this client (nil: missing or no selector).
    var selectorValue: Value?
    /// The record when the client is on this node.
    let record: ClientRecord?
    /// The node holding the client, when remote.
    var node: RemoteNode? = nil
    /// The client's handle on its node, when remote.
    var handle: UInt64 = 0
    /// The client's descriptor (rest.md §3.2) as MessagePack, when remote and listed.
    var descriptor: [UInt8]? = nil

    /// Where the client lives, as its deliverer needs it.
    enum Location {
        case here(ClientRecord)
        case peer(RemoteNode, handle: UInt64)
    }

    /// Here, on a peer, or nil for a candidate with neither (not made by
    /// the router or the cluster).
    var location: Location? {
        if let record { return .here(record) }
        if let node { return .peer(node, handle: handle) }
        return nil
    }
}

/// What a resolved query is for (query.md §10 step 4).
enum RoutingPurpose {
    /// SEND and HTTP proxy: one client (key hash or uniform random).
    case one
    /// BROADCAST: every candidate.
    case all
    /// QUERY_NODES and `POST /api/v1/query`: the candidate list itself.
    case list
}
