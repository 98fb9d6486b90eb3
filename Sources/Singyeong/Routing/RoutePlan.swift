/// Where a SEND or BROADCAST goes (query.md §10 across nodes, cluster.md
/// §4), as `Router.plan` decides it and `Router.route` carries it out.
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

/// What `Router.route` did with a message, as far as the sender's answer
/// goes.
enum RouteStatus {
    /// Delivered to local clients, now.
    case delivered
    /// Nothing matched: the sender is owed op 3 `no_route`, now.
    case noRoute
    /// Nothing matched a droppable target: counted, no answer.
    case dropped
    /// Waiting for peers: the origin hears of a `no_route` if it comes to that.
    case pending
}

/// The sender of a routed message, as routing sees it (the gateway session
/// conforms): told when a message that waited for peers reached nobody.
/// Held strongly until the peers answered (a weak reference per message
/// made every retain and release of the session slow), so a conformer
/// must ignore `noRoute` once its connection is gone.
protocol RouteOrigin: AnyObject {
    /// Nothing anywhere matched `message` (a non-droppable target): answer
    /// op 3 `no_route`, echoing the frame `message` was copied from.
    func noRoute(_ message: OwnedRoutedMessage)
}
