// How the node's parts serve the REST endpoints (`RESTServices.swift`).
// The conformances live here, in the one folder above both REST and the
// folders on its layer (Gateway, Proxy), so none of those names another
// (issue 11). Each is what the REST endpoint used to do through the node.

/// `POST /api/v1/query`: resolve locally (and on peers when they may have
/// matches), then describe the candidates as QUERY_NODES does.
extension Gateway: ClientQueryService {
    func describeClients(matching query: Query, value: Value, completion: @escaping ([UInt8]) -> Void) {
        // What peers are asked (a REST body is not kept, so re-encoded).
        var encoded: [UInt8] = []
        value.appendJSON(to: &encoded)
        encoded.withUnsafeBytes { bytes in
            router.resolve(query, encoded: bytes, purpose: .list) { candidates in
                var w = FrameWriter(encoding: .json, capacity: 256 * max(candidates.count, 1))
                ClientDescriptor.writeList(candidates, into: &w)
                completion(w.bytes)
            }
        }
    }
}

/// `GET /api/v1/discovery/tags`: this node's store, gathered with every
/// visible peer's when clustering.
extension Gateway: ApplicationDiscoveryService {
    func discoverApplications(withTags tags: [String], completion: @escaping (Set<String>) -> Void) {
        let local = Set(store.applications(withTags: tags))
        guard let peers else { return completion(local) }
        peers.gatherTags(tags, local: local, completion: completion)
    }
}

/// `POST /api/v1/proxy`: validation with the gateway's compiled-query
/// cache, then `handle`.
extension ProxyService: ProxyExchangeService {
    func startExchange(_ fields: ValueObject, callerIP: String,
                       completion: @escaping (HTTPResponse) -> Void) -> Result<RESTCancellable, HTTPResponse> {
        switch ProxyRequest.validate(fields, cache: queryCache) {
        case .success(let request): return .success(handle(request, callerIP: callerIP, completion: completion))
        case .failure(let response): return .failure(response)
        }
    }
}

/// Cancelled when the HTTP caller goes away.
extension ProxyExchange: RESTCancellable {}

/// The same password check and failure budget as IDENTIFY.
extension AuthGuard: RESTAuthenticator {}

/// `/readyz` and `/metrics` read the node itself.
extension SingyeongNode: ReadinessService, MetricsTextService {
    func metricsText() -> String {
        MetricsExposition.render(self)
    }
}

/// `GET /api/v1/queues[/<name>]`: the queues this node holds (in a
/// cluster, each queue is listed by the node that owns it; one asked for by
/// name elsewhere shows zeros and the holder this node knows of, if any).
extension SingyeongNode: QueueInspectionService {
    func queueSummaries() -> [QueueSummary]? {
        guard let queues else { return nil }
        return queues.queues.values.map(summary)
    }

    func queueSummary(named name: String) -> QueueSummary? {
        guard let queues else { return nil }
        guard let q = queues.queues[name] else {
            return QueueSummary(name: name, queued: 0, unacked: 0, dead: 0, waiting: 0, owner: queues.redirects[name],
                                loaded: false, oldestQueuedAge: nil)
        }
        return summary(q)
    }

    func queueStore() -> (kind: String, available: Bool)? {
        guard let queues else { return nil }
        return (queues.isDurable ? "redis" : "memory", queues.store.isAvailable)
    }

    private func summary(_ q: MessageQueue) -> QueueSummary {
        QueueSummary(name: q.name, queued: q.queuedCount, unacked: q.unackedCount, dead: q.deadCount,
                     waiting: q.waiting.count, owner: q.isLoaded ? queues?.store.ownerID : nil, loaded: q.isLoaded,
                     oldestQueuedAge: q.oldestQueuedSince.map { max(0, loop.nowMilliseconds - $0) })
    }
}
