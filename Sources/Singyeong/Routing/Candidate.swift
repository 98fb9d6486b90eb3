/// A client that matched a query, wherever it lives.
///
/// Today every candidate is local (`record`); the cluster work adds remote
/// candidates (node + handle, plus the selector value the remote node sends
/// back), which is why the selector value and the ids are carried here rather
/// than read from the record at choice time.
struct Candidate {
    let applicationID: String
    let clientID: String
    /// The selector's value for this client (nil: missing or no selector).
    var selectorValue: Value?
    /// The record when the client is on this node.
    let record: ClientRecord?
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
