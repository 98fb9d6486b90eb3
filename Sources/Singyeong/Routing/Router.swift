/// Query resolution and target choice: query.md §10.
///
/// `resolve` is the one entry point every feature uses (SEND, BROADCAST,
/// QUERY_NODES, REST query, later proxy and queues). It collects candidates
/// from every source — this node's store today; the cluster work adds one
/// source per visible peer and calls `completion` when all have answered or
/// timed out — then applies `optional`, the selector and the purpose's
/// choice on the union, so every matching client anywhere is equally likely.
///
/// Local collection runs the compiled query over the application's dense
/// client array and allocates nothing per client; matches go into a reused
/// scratch array.
final class Router {
    let store: ClientStore
    private var rng = SystemRandomNumberGenerator()
    private var scratch: [Candidate] = []

    init(store: ClientStore) {
        self.store = store
        scratch.reserveCapacity(64)
    }

    /// Resolves `query` for `purpose` and hands the chosen candidates to
    /// `completion` (empty when nothing matched). The buffer is only valid
    /// inside `completion`.
    func resolve(_ query: Query, purpose: RoutingPurpose, completion: (ArraySlice<Candidate>) -> Void) {
        scratch.removeAll(keepingCapacity: true)
        collectLocal(query, ignoringOps: false, into: &scratch)
        var useSelector = true
        if scratch.isEmpty && query.optional {
            // optional: no match anywhere → every base-filter client, no selector.
            collectLocal(query, ignoringOps: true, into: &scratch)
            useSelector = false
        }
        if scratch.isEmpty {
            completion(scratch[...])
            return
        }
        if useSelector, let selector = query.selector {
            let candidates = scratch
            if let chosen = selector.choose(among: candidates.count, value: { candidates[$0].selectorValue }, using: &rng) {
                completion(scratch[chosen...chosen])
                return
            }
        }
        switch purpose {
        case .all, .list:
            completion(scratch[...])
        case .one:
            let index: Int
            if let key = query.key {
                // Stable order so the same key finds the same client while
                // the candidate set is unchanged (query.md §8).
                scratch.sort { KeyHash.candidateLess(($0.applicationID, $0.clientID), ($1.applicationID, $1.clientID)) }
                index = KeyHash.index(forKey: key, count: scratch.count)
            } else {
                index = Int.random(in: 0..<scratch.count, using: &rng)
            }
            completion(scratch[index...index])
        }
    }

    /// query.md §2 + §6 over this node's clients.
    private func collectLocal(_ query: Query, ignoringOps: Bool, into out: inout [Candidate]) {
        let selector = ignoringOps ? nil : query.selector
        // The store holds only live clients (a record leaves it the moment
        // its connection ends), so no per-client liveness check is needed.
        func consider(_ record: ClientRecord) {
            guard query.includeRestricted || !record.restricted else { return }
            guard ignoringOps || query.matchesOps(record.metadata) else { return }
            out.append(Candidate(applicationID: record.applicationID, clientID: record.clientID,
                                 selectorValue: selector?.value(in: record.metadata), record: record))
        }
        if let application = query.application {
            guard let app = store.application(application) else { return }
            if !ignoringOps, let (key, value) = query.indexableEquality {
                // Only clients holding that string can satisfy the op.
                if let holders = app.clients(withKey: key, value: value) {
                    for record in holders { consider(record) }
                }
                return
            }
            for record in app.clients { consider(record) }
        } else {
            store.forEachClient(consider)
        }
    }
}
