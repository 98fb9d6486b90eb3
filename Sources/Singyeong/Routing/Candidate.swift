/// A client that matched a query, wherever it lives: on this node (`record`)
/// or on a peer (node, handle, ids, and for listings the descriptor the
/// peer sent back, all in one `Remote` object).
///
/// Laid out so that copying one is cheap: the router copies candidates while
/// it collects and chooses, and a copy of two `String`s, a record, a node
/// and a descriptor cost several atomic reference-count operations per
/// candidate per SEND. Now a local candidate copies as its record and its
/// selector value (BENCHMARKS.md, "First cuts on the SEND path").
struct Candidate {
    /// What a candidate on a peer carries.
    final class Remote {
        let applicationID: String
        let clientID: String
        let node: RemoteNode?
        let handle: UInt64
        let descriptor: [UInt8]?

        init(applicationID: String, clientID: String, node: RemoteNode?, handle: UInt64, descriptor: [UInt8]?) {
            self.applicationID = applicationID
            self.clientID = clientID
            self.node = node
            self.handle = handle
            self.descriptor = descriptor
        }
    }

    /// The record when the client is on this node.
    let record: ClientRecord?
    /// Set exactly when `record` is nil.
    private let remote: Remote?
    /// The selector's value for this client (nil: missing or no selector).
    var selectorValue: Value?

    var applicationID: String { record?.applicationID ?? remote!.applicationID }
    var clientID: String { record?.clientID ?? remote!.clientID }
    /// The node holding the client, when remote.
    var node: RemoteNode? { remote?.node }
    /// The client's handle on its node, when remote.
    var handle: UInt64 { remote?.handle ?? 0 }
    /// The client's descriptor (rest.md §3.2) as MessagePack, when remote and listed.
    var descriptor: [UInt8]? { remote?.descriptor }

    /// A client of this node.
    init(local record: ClientRecord, selectorValue: Value?) {
        self.record = record
        remote = nil
        self.selectorValue = selectorValue
    }

    /// Any candidate; with a `record`, the other arguments are not kept.
    init(applicationID: String, clientID: String, selectorValue: Value?, record: ClientRecord?,
         node: RemoteNode? = nil, handle: UInt64 = 0, descriptor: [UInt8]? = nil) {
        self.record = record
        remote = record == nil
            ? Remote(applicationID: applicationID, clientID: clientID, node: node, handle: handle, descriptor: descriptor)
            : nil
        self.selectorValue = selectorValue
    }

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
