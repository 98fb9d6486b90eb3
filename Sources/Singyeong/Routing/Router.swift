/// Query resolution and target choice: query.md §10.
///
/// `resolve` is the one entry point every feature uses (SEND, BROADCAST,
/// QUERY_NODES, REST query, later proxy and queues). It collects candidates
/// from this node's store and, when clustering, from every visible peer
/// (scatter/gather with a per-node deadline), then applies `optional`, the
/// selector and the purpose's choice once, on the union — so every matching
/// client anywhere is equally likely. Without peers, `completion` runs before
/// `resolve` returns; with peers, once every peer answered or timed out.
///
/// Local collection runs the compiled query over the application's clients
/// (or, for a top-level string `$eq`, the store's index) and allocates
/// nothing per client; matches go into a reused scratch array.
final class Router {
    let store: ClientStore
    /// The peers to ask; set when clustering.
    weak var peers: PeerCandidates?
    /// Samples query evaluation time.
    let metrics: Metrics
    /// Drawn from for every SEND, so exempt from dynamic exclusivity
    /// checking (BENCHMARKS.md, "Checked release build"): FastRandom's
    /// methods call nothing, and the one closure run while it is passed
    /// inout (`selector.choose`'s `value`) only reads candidates.
    @exclusivity(unchecked) private var rng = FastRandom()
    /// Stays dynamically checked: `choose` runs the caller's completion
    /// while `scratch` is passed inout, so a completion that re-entered
    /// `resolve` would overlap it — a bug the check turns into a trap.
    private var scratch: [Candidate] = []

    init(store: ClientStore, metrics: Metrics = Metrics()) {
        self.store = store
        self.metrics = metrics
        scratch.reserveCapacity(64)
    }

    /// Whether resolving `query` has to wait for peers: some visible peer
    /// may have clients of its application.
    func mustAskPeers(_ query: Query) -> Bool {
        peers?.mayHaveCandidates(ofApplication: query.application) ?? false
    }

    /// Where a routed message for `query` goes: the one decision between
    /// local delivery, forwarding to one peer and scatter/gather.
    func plan(_ query: Query) -> RoutePlan {
        guard let peers, peers.mayHaveCandidates(ofApplication: query.application) else { return .local }
        if let only = peers.onlyPeer(for: query), !hasLocalCandidates(query) { return .forward(to: only) }
        return .gather
    }

    /// Resolves `query` for `purpose`. `encoded` is the query as the client
    /// sent it (needed to ask peers; nil resolves locally only).
    ///
    /// Always inlined: on a single node the completion then runs in place,
    /// with no heap-allocated closure context per message (measured with
    /// callgrind: ~1,000 instructions and a malloc per SEND when it was not).
    @inline(__always)
    func resolve(_ query: Query, encoded: UnsafeRawBufferPointer? = nil, encoding: PayloadEncoding = .json,
                 purpose: RoutingPurpose, completion: @escaping (ArraySlice<Candidate>) -> Void) {
        scratch.removeAll(keepingCapacity: true)
        if metrics.shouldSampleQuery() {
            collectLocalTimed(query)
        } else {
            collectLocal(query, ignoringOps: false, into: &scratch)
        }
        var fallback: [Candidate] = []
        if query.optional && scratch.isEmpty {
            collectLocal(query, ignoringOps: true, into: &fallback)
        }
        guard let peers, peers.mayHaveCandidates(ofApplication: query.application), let encoded else {
            choose(query, purpose: purpose, matches: &scratch, fallback: fallback, completion: completion)
            return
        }
        var matches = scratch
        peers.scatter(encodedQuery: encoded, encoding: encoding, application: query.application, descriptors: purpose == .list,
                        withFallback: query.optional) { [weak self] remoteMatches, remoteFallback in
            guard let self else { return }
            matches.append(contentsOf: remoteMatches)
            self.choose(query, purpose: purpose, matches: &matches, fallback: fallback + remoteFallback, completion: completion)
        }
    }

    /// The sampled case of `resolve`'s local collection, kept out of line so
    /// the timing code does not grow every inlined copy of `resolve`.
    @inline(never)
    private func collectLocalTimed(_ query: Query) {
        let start = Metrics.monotonicSeconds()
        collectLocal(query, ignoringOps: false, into: &scratch)
        metrics.queryEvaluation.observe(Metrics.monotonicSeconds() - start)
    }

    /// query.md §10 steps 2–4 over the union.
    private func choose(_ query: Query, purpose: RoutingPurpose, matches: inout [Candidate], fallback: [Candidate],
                        completion: (ArraySlice<Candidate>) -> Void) {
        var useSelector = true
        if matches.isEmpty && query.optional {
            // optional: no match anywhere → every base-filter client, no selector.
            matches = fallback
            useSelector = false
        }
        if matches.isEmpty {
            completion(matches[...])
            return
        }
        if useSelector, let selector = query.selector {
            let candidates = matches
            if let chosen = selector.choose(among: candidates.count, value: { candidates[$0].selectorValue }, using: &rng) {
                completion(matches[chosen...chosen])
                return
            }
        }
        switch purpose {
        case .all, .list:
            completion(matches[...])
        case .one:
            let index: Int
            if let key = query.key {
                // Stable order so the same key finds the same client while
                // the candidate set is unchanged (query.md §8).
                matches.sort { KeyHash.candidateLess(($0.applicationID, $0.clientID), ($1.applicationID, $1.clientID)) }
                index = KeyHash.index(forKey: key, count: matches.count)
            } else {
                index = Int.random(in: 0..<matches.count, using: &rng)
            }
            completion(matches[index...index])
        }
    }

    /// Whether any local client could be a candidate (matches, or under
    /// `optional` a base-filter client that the fallback could pick).
    func hasLocalCandidates(_ query: Query) -> Bool {
        scratch.removeAll(keepingCapacity: true)
        collectLocal(query, ignoringOps: false, into: &scratch)
        if scratch.isEmpty && query.optional { collectLocal(query, ignoringOps: true, into: &scratch) }
        defer { scratch.removeAll(keepingCapacity: true) }
        return !scratch.isEmpty
    }

    /// This node's candidates for `query` (what a peer asks for).
    func collectLocalCandidates(_ query: Query, ignoringOps: Bool) -> [Candidate] {
        var out: [Candidate] = []
        collectLocal(query, ignoringOps: ignoringOps, into: &out)
        return out
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
