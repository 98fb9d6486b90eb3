@testable import Singyeong

/// What the router answers for a query, against what evaluating the query on
/// every client gives: the pair the index and column tests compare.
extension Router {
    /// Client ids of `resolveLocally(q, purpose: .list)`.
    func listedClientIDs(_ q: Query) -> Set<String> {
        var ids = Set<String>()
        resolveLocally(q, purpose: .list) { for c in $0 { ids.insert(c.clientID) } }
        return ids
    }
}

extension ClientStore {
    /// Client ids of every client the query's base filter and ops accept,
    /// checked one by one on the stored metadata.
    func clientIDs(matching q: Query) -> Set<String> {
        var ids = Set<String>()
        forEachClient { r in
            if q.matchesBase(application: r.applicationID, restricted: r.restricted), q.matchesOps(r.metadata) { ids.insert(r.clientID) }
        }
        return ids
    }
}
