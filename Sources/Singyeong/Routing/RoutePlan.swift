/// Where a SEND or BROADCAST goes (query.md §10 across nodes, cluster.md
/// §4), as `Router.plan` decides it; the gateway session carries it out.
enum RoutePlan {
    /// No visible peer can hold candidates: resolve and deliver here, now.
    case local
    /// Every candidate is on one peer and none here: send message and query
    /// there, and it resolves and delivers in one step (the same choice as
    /// gathering, since its candidates are the whole set).
    case forward(to: RemoteNode)
    /// Candidates may be here and on several peers: gather them, then choose
    /// over the union.
    case gather
}
