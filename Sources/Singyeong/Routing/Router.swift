/// Query resolution, target choice and routing: query.md §10, cluster.md §4.
///
/// Two entry points. `route` takes a SEND or BROADCAST from decoding to
/// delivery: it makes the one decision between delivering here, forwarding
/// to the only peer that may hold candidates, and scatter/gather, and
/// carries it out; the caller only answers its client. `resolve` returns
/// the chosen candidates for everything else that picks clients (QUERY_NODES,
/// REST query, proxy, later queues), which then acts on them (`Candidate
/// .location`: here or on which peer).
///
/// Either way candidates come from this node's store and, when clustering,
/// from every visible peer (per-node deadline); `optional`, the selector
/// and the purpose's choice apply once, on the union — so every matching
/// client anywhere is equally likely.
///
/// Local collection allocates nothing per client; matches go into a reused
/// scratch array. It scans the application's metadata columns when every op
/// is a column test (`QueryPlan.scalarTests`; a SEND then draws its one
/// client during the scan), else narrows by the store's string index for a
/// top-level string `$eq` in a large application, else runs the compiled
/// query over each client's metadata.
final class Router {
    let store: ClientStore
    /// The other nodes; set when clustering.
    weak var peers: PeerNetwork?
    /// This node's clients' delivery, for messages that waited for peers:
    /// the gateway, which owns this router. Unowned, not weak: a weak
    /// reference gives the gateway a side table, and every retain and
    /// release of it (several per SEND) then takes the slow path (callgrind,
    /// BENCHMARKS.md: about 1,500 instructions per SEND more than unowned).
    unowned var local: LocalDelivery?
    /// Counts routed, unrouted and dropped messages; samples query
    /// evaluation time.
    let metrics: Metrics
    /// Drawn from for every SEND, so exempt from dynamic exclusivity
    /// checking (BENCHMARKS.md, "Checked release build"): FastRandom's
    /// methods call nothing, and the one closure run while it is passed
    /// inout (`selector.choose`'s `value`) only reads candidates.
    @exclusivity(unchecked) private var rng = FastRandom()
    /// Reused for the candidates of one local resolution. Only ever moved
    /// out (`takeScratch`) and back (`returnScratch`), never passed inout
    /// from `self`, so a completion that re-entered `resolve` would find it
    /// empty and grow its own, not overlap this one: hence exempt from
    /// dynamic exclusivity checking (three checks per SEND).
    @exclusivity(unchecked) private var scratch: [Candidate] = []

    /// The scratch array, emptied, now owned by the caller.
    @inline(__always)
    private func takeScratch() -> [Candidate] {
        var taken = scratch
        scratch = []
        taken.removeAll(keepingCapacity: true)
        return taken
    }

    /// Gives the array back for the next resolution (dropping its
    /// elements, keeping its storage).
    @inline(__always)
    private func returnScratch(_ array: inout [Candidate]) {
        array.removeAll(keepingCapacity: true)
        scratch = array
    }

    init(store: ClientStore, metrics: Metrics = Metrics()) {
        self.store = store
        self.metrics = metrics
        scratch.reserveCapacity(64)
    }

    /// Where a routed message for `query` goes (see `RoutePlan`).
    func plan(_ query: Query) -> RoutePlan {
        guard let peers, peers.mayHaveCandidates(ofApplication: query.application) else { return .local }
        if let only = peers.onlyPeer(for: query), !hasLocalCandidates(query) { return .forward(to: only) }
        return .gather
    }

    /// Routes a SEND (`purpose` `.one`) or BROADCAST (`.all`) and counts it.
    ///
    /// - `target`: the query's bytes as the client sent them (sent to peers).
    /// - `message`: nonce and payload, borrowed from the client's frame.
    /// - `deliverHere`: delivers to local candidates, now; lets the caller
    ///   build frames straight from its decoded frame (no copy).
    /// - `copy`: the client's frame copied, called only when the message
    ///   must outlive the call (peers involved).
    /// - `origin`: told of a `no_route` found only after waiting for peers.
    ///
    /// Always inlined: on a single node the closures then run in place,
    /// with no heap-allocated closure context per message (measured with
    /// callgrind: ~1,000 instructions and a malloc per SEND when it was not).
    @inline(__always)
    func route(_ query: Query, target: UnsafeRawBufferPointer, purpose: RoutingPurpose, message: RoutedMessage,
               origin: RouteOrigin, copy: () -> OwnedRoutedMessage,
               deliverHere: (ArraySlice<Candidate>) -> Void) -> RouteStatus {
        let event: Metrics.Event = purpose == .all ? .broadcast : .send
        metrics.count(event, .routed)
        switch plan(query) {
        case .local:
            var status = RouteStatus.delivered
            resolveLocally(query, purpose: purpose) { candidates in
                if candidates.isEmpty {
                    status = unrouted(query, event: event)
                } else {
                    deliverHere(candidates)
                }
            }
            return status
        case .forward(let node):
            // The frame is kept only for a possible no_route echo.
            forward(message, query: query, target: target, all: purpose == .all, to: node,
                    echo: query.droppable ? nil : copy(), origin: origin)
            return .pending
        case .gather:
            gatherAndDeliver(copy(), query: query, target: target, purpose: purpose, origin: origin)
            return .pending
        }
    }

    /// Counts a message that matched nobody; what the sender is owed.
    private func unrouted(_ query: Query, event: Metrics.Event) -> RouteStatus {
        metrics.count(event, query.droppable ? .dropped : .noRoute)
        return query.droppable ? .dropped : .noRoute
    }

    /// `RoutePlan.forward`: the peer resolves and delivers in one step.
    @inline(never)
    private func forward(_ message: RoutedMessage, query: Query, target: UnsafeRawBufferPointer, all: Bool,
                         to node: RemoteNode, echo: OwnedRoutedMessage?, origin: RouteOrigin) {
        guard let peers else { return }
        // Strong captures (see `RouteOrigin`): a weak reference per message
        // gave the router and every sending session a side table, and with
        // it Swift's slow path for each of their retains and releases.
        peers.forward(message, query: target, all: all, to: node) { [self, origin] delivered in
            guard delivered == 0 else { return }
            if self.unrouted(query, event: all ? .broadcast : .send) == .noRoute, let echo { origin.noRoute(echo) }
        }
    }

    /// `RoutePlan.gather`: choose over every node's candidates, then deliver
    /// (even if the sender disconnected meanwhile).
    @inline(never)
    private func gatherAndDeliver(_ owned: OwnedRoutedMessage, query: Query, target: UnsafeRawBufferPointer,
                                  purpose: RoutingPurpose, origin: RouteOrigin) {
        resolve(query, encoded: target, encoding: owned.encoding, purpose: purpose) { [self, origin] candidates in
            if candidates.isEmpty {
                // Only the sender hears of it, if it is still connected.
                if self.unrouted(query, event: purpose == .all ? .broadcast : .send) == .noRoute { origin.noRoute(owned) }
                return
            }
            owned.withMessage { self.deliver($0, to: candidates) }
        }
    }

    /// Delivers to resolved candidates: local ones through `local`, each
    /// peer's with one `deliver` carrying all of its recipients
    /// (cluster.md §4.3).
    private func deliver(_ message: RoutedMessage, to candidates: ArraySlice<Candidate>) {
        var here: [ClientRecord] = []
        var remote: [ObjectIdentifier: (RemoteNode, [UInt64])] = [:]
        for candidate in candidates {
            switch candidate.location {
            case .here(let record): here.append(record)
            case .peer(let node, let handle): remote[ObjectIdentifier(node), default: (node, [])].1.append(handle)
            case nil: continue
            }
        }
        if !here.isEmpty { local?.deliverLocally(message, to: here) }
        for (node, handles) in remote.values { peers?.deliver(message, to: node, handles: handles) }
    }

    /// Resolves `query` for `purpose` over this node and every visible peer
    /// that may hold candidates. `encoded` is the query as the client sent
    /// it, in `encoding` (what peers are asked). Without such peers,
    /// `completion` runs before `resolve` returns; with them, once every
    /// peer answered or timed out.
    func resolve(_ query: Query, encoded: UnsafeRawBufferPointer, encoding: PayloadEncoding = .json,
                 purpose: RoutingPurpose, completion: @escaping (ArraySlice<Candidate>) -> Void) {
        guard let peers, peers.mayHaveCandidates(ofApplication: query.application) else {
            resolveLocally(query, purpose: purpose, completion: completion)
            return
        }
        var matches: [Candidate] = []
        collectMatches(query, into: &matches)
        var fallback: [Candidate] = []
        if query.optional && matches.isEmpty {
            collectLocal(query, ignoringOps: true, into: &fallback)
        }
        peers.scatter(encodedQuery: encoded, encoding: encoding, application: query.application, descriptors: purpose == .list,
                        withFallback: query.optional) { [weak self] remoteMatches, remoteFallback in
            guard let self else { return }
            matches.append(contentsOf: remoteMatches)
            self.choose(query, purpose: purpose, matches: &matches, fallback: fallback + remoteFallback, completion: completion)
        }
    }

    /// Resolves `query` over this node's clients only, now: a single node,
    /// or a peer that forwarded a message whose candidates can only be here.
    @inline(__always)
    func resolveLocally(_ query: Query, purpose: RoutingPurpose, completion: (ArraySlice<Candidate>) -> Void) {
        // Uniform choice among the matches: the column scan can draw the
        // one without building a candidate for each (`choose` then has one).
        var matches = takeScratch()
        collectMatches(query, into: &matches, pickOne: purpose == .one && query.selector == nil && query.key == nil)
        var fallback: [Candidate] = []
        if query.optional && matches.isEmpty {
            collectLocal(query, ignoringOps: true, into: &fallback)
        }
        choose(query, purpose: purpose, matches: &matches, fallback: fallback, completion: completion)
        returnScratch(&matches)
    }

    /// This node's matches into `out`, timed for one query in a sample.
    @inline(__always)
    private func collectMatches(_ query: Query, into out: inout [Candidate], pickOne: Bool = false) {
        if metrics.shouldSampleQuery() {
            collectLocalTimed(query, into: &out, pickOne: pickOne)
        } else {
            collectLocal(query, ignoringOps: false, into: &out, pickOne: pickOne)
        }
    }

    /// The sampled case of `resolve`'s local collection, kept out of line so
    /// the timing code does not grow every inlined copy of `resolve`.
    @inline(never)
    private func collectLocalTimed(_ query: Query, into out: inout [Candidate], pickOne: Bool) {
        let start = Metrics.monotonicSeconds()
        collectLocal(query, ignoringOps: false, into: &out, pickOne: pickOne)
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
        var found = takeScratch()
        defer { returnScratch(&found) }
        collectLocal(query, ignoringOps: false, into: &found)
        if found.isEmpty && query.optional { collectLocal(query, ignoringOps: true, into: &found) }
        return !found.isEmpty
    }

    /// Whether a client of this node passes `query`'s base filter and ops
    /// (no `optional` fallback), without building a candidate list.
    func hasLocalMatch(_ query: Query) -> Bool {
        var found = takeScratch()
        defer { returnScratch(&found) }
        collectLocal(query, ignoringOps: false, into: &found, pickOne: query.selector == nil)
        return !found.isEmpty
    }

    /// Up to this many clients an application is scanned by columns rather
    /// than narrowed by the string index (~2 ns per client scanned).
    static let columnScanLimit = 256

    /// Indices of matching clients while a column scan runs (reused).
    /// Exempt from dynamic exclusivity checking: `collectByColumns` only
    /// moves it out at its start and back at its end.
    @exclusivity(unchecked) private var matchIndices: [Int32] = []

    /// `collectLocal` over the application's columns, for ops that are all
    /// column tests; false (and nothing appended) when the application has
    /// no free column for one of the keys.
    /// With `pickOne`, only one match drawn uniformly at random is
    /// appended (a SEND without selector or key: the others would only be
    /// built to be dropped).
    private func collectByColumns(_ app: ClientStore.Application, plan: QueryPlan, tests: [ScalarTest], includeRestricted: Bool,
                                  selector: Selector?, pickOne: Bool, into out: inout [Candidate]) -> Bool {
        // Taken out of `self` so appends work on a uniquely held buffer.
        var indices = matchIndices
        matchIndices = []
        defer { matchIndices = indices }
        indices.removeAll(keepingCapacity: true)
        let count = app.clients.count
        // Whether string hits need a look at each candidate (see ScalarColumn).
        var mustConfirm = false
        if tests.isEmpty {
            app.restrictedFlags.withUnsafeBufferPointer { restricted in
                for i in 0..<count where includeRestricted || !restricted[i] { indices.append(Int32(truncatingIfNeeded: i)) }
            }
        } else {
            // The first test scans every client; the others filter its matches.
            guard let column = app.column(key: plan.testKeys[0], hash: tests[0].hash) else { return false }
            if let text = plan.testStrings[0], !column.isExact(text: text, textHash: tests[0].literal.bits) { mustConfirm = true }
            app.restrictedFlags.withUnsafeBufferPointer { restricted in
                column.scan(tests[0], restricted: restricted, includeRestricted: includeRestricted, into: &indices)
            }
        }
        for t in tests.indices.dropFirst() {
            guard let column = app.column(key: plan.testKeys[t], hash: tests[t].hash) else { return false }
            if let text = plan.testStrings[t], !column.isExact(text: text, textHash: tests[t].literal.bits) { mustConfirm = true }
            let test = tests[t]
            var kept = 0
            column.scalars.withUnsafeBufferPointer { scalars in
                indices.withUnsafeMutableBufferPointer { list in
                    for k in 0..<list.count where test.matches(scalars[Int(list[k])]) {
                        list[kept] = list[k]
                        kept += 1
                    }
                }
            }
            indices.removeLast(indices.count - kept)
        }
        if pickOne {
            // Draw, and confirm only the one drawn; a hash hit that fails is
            // removed and the draw repeated, which keeps the choice uniform
            // over the true matches.
            while indices.count > 1 || (mustConfirm && indices.count == 1) {
                let k = indices.count == 1 ? 0 : Int.random(in: 0..<indices.count, using: &rng)
                let chosen = indices[k]
                if !mustConfirm || confirmed(plan, tests: tests, app.clients[Int(chosen)]) {
                    indices[0] = chosen
                    indices.removeLast(indices.count - 1)
                    break
                }
                indices.swapAt(k, indices.count - 1)
                indices.removeLast()
            }
        } else if mustConfirm {
            var kept = 0
            app.clients.withUnsafeBufferPointer { clients in
                indices.withUnsafeMutableBufferPointer { list in
                    for k in 0..<list.count where confirmed(plan, tests: tests, clients[Int(list[k])]) {
                        list[kept] = list[k]
                        kept += 1
                    }
                }
            }
            indices.removeLast(indices.count - kept)
        }
        app.clients.withUnsafeBufferPointer { clients in
            for i in indices {
                let record = clients[Int(i)]
                out.append(Candidate(local: record, selectorValue: selector?.value(in: record.metadata)))
            }
        }
        return true
    }

    /// Every string `$eq` of `plan` holds on the bytes (column hits compare
    /// hashes).
    private func confirmed(_ plan: QueryPlan, tests: [ScalarTest], _ record: ClientRecord) -> Bool {
        for t in tests.indices where tests[t].needsConfirmation {
            guard let text = plan.testStrings[t],
                  tests[t].confirm(record.metadata, key: plan.testKeys[t], text: text) else { return false }
        }
        return true
    }

    /// This node's candidates for `query` (what a peer asks for).
    func collectLocalCandidates(_ query: Query, ignoringOps: Bool) -> [Candidate] {
        var out: [Candidate] = []
        collectLocal(query, ignoringOps: ignoringOps, into: &out)
        return out
    }

    /// query.md §2 + §6 over this node's clients.
    private func collectLocal(_ query: Query, ignoringOps: Bool, into out: inout [Candidate], pickOne: Bool = false) {
        let selector = ignoringOps ? nil : query.selector
        // The store holds only live clients (a record leaves it the moment
        // its connection ends), so no per-client liveness check is needed.
        func consider(_ record: ClientRecord) {
            guard query.includeRestricted || !record.restricted else { return }
            guard ignoringOps || query.matchesOps(record.metadata) else { return }
            out.append(Candidate(local: record, selectorValue: selector?.value(in: record.metadata)))
        }
        if query.application != nil {
            guard let app = store.application(of: query) else { return }
            // A small application is scanned by columns even when the string
            // index could narrow: scanning a few hundred scalars costs less
            // than the index's three String-keyed lookups.
            if !ignoringOps, let tests = query.plan.scalarTests,
               query.indexableEquality == nil || app.clients.count <= Self.columnScanLimit,
               collectByColumns(app, plan: query.plan, tests: tests, includeRestricted: query.includeRestricted, selector: selector,
                                pickOne: pickOne, into: &out) {
                return
            }
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
