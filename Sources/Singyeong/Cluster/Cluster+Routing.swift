import Logging

/// What routing asks of the other nodes (query.md §10, cluster.md §4):
/// scatter/gather of queries and the answers to peers' queries, messages
/// delivered to or forwarded for clients of one peer, and client events.
extension Cluster {
    // MARK: Scatter / gather (query.md §10, cluster.md §4)

    /// A query waiting for peers.
    final class PendingQuery: PeerRequestTable.Request {
        var matches: [Candidate] = []
        var fallback: [Candidate] = []
        let logger: Logger
        let completion: (_ matches: [Candidate], _ fallback: [Candidate]) -> Void

        init(logger: Logger, completion: @escaping ([Candidate], [Candidate]) -> Void) {
            self.logger = logger
            self.completion = completion
        }

        override func ended(_ ending: PeerRequestTable.Ending) {
            if ending == .deadline, !waiting.isEmpty {
                logger.info("cluster query deadline passed; counting silent nodes as empty", metadata: ["missing": "\(waiting.count)"])
            }
            // A peer that said it is leaving after answering has sent its
            // clients away once it had our acknowledgement, which went out
            // before this choice: none of them may be chosen now.
            func staying(_ candidate: Candidate) -> Bool { !((candidate.node as? PeerLink)?.isLeaving ?? false) }
            if matches.contains(where: { !staying($0) }) || fallback.contains(where: { !staying($0) }) {
                completion(matches.filter(staying), fallback.filter(staying))
            } else {
                completion(matches, fallback)
            }
        }
    }

    /// Sends `query` (its encoded bytes in `encoding`) to every visible peer
    /// and calls `completion` with their matches (and, when `withFallback`,
    /// the base-filter clients of peers that had no match) once all answered
    /// or CLUSTER_QUERY_TIMEOUT_MS passed. Without peers nothing is sent and
    /// `completion` is not called: the caller checks `peers` first.
    func scatter(encodedQuery: UnsafeRawBufferPointer, encoding: PayloadEncoding, application: String?, descriptors: Bool,
                 withFallback: Bool, completion: @escaping ([Candidate], [Candidate]) -> Void) {
        let id = requests.makeID()
        let body = QueryMessage(encoding: encoding, query: encodedQuery, descriptors: descriptors, withFallback: withFallback).bytes
        // Peers known to have no client of the application cannot match
        // (nor fall back: optional keeps the application filter).
        let asked = links.values.filter { $0.isUp && $0.mayHaveClients(of: application) }
        let query = PendingQuery(logger: logger, completion: completion)
        requests.start(query, id: id, waitingFor: Set(asked.map { ObjectIdentifier($0) }), deadlines: queryDeadlines)
        for link in asked where link.isUp { link.sendBatched(.query, requestID: id, body: body) }
        requests.endIfComplete(query)
    }

    /// A peer asks: run the query on our clients.
    func answerQuery(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let message = QueryMessage(tape: tape, body: body) else { return }
        let result = compileQuery(message.query, encoding: message.encoding)
        guard case .success(let query) = result else {
            // The asking node validated it; a mismatch means different versions.
            link.sendBatched(.queryResult, requestID: requestID,
                             body: QueryResultMessage(matches: [], fallback: [], descriptors: false).bytes)
            return
        }
        let matches = router.collectLocalCandidates(query, ignoringOps: false)
        let fallback = message.withFallback && matches.isEmpty ? router.collectLocalCandidates(query, ignoringOps: true) : []
        let body = QueryResultMessage(matches: matches, fallback: fallback, descriptors: message.descriptors).bytes
        link.sendBatched(.queryResult, requestID: requestID, body: body)
    }

    /// A peer's answer to one of our queries.
    func receiveQueryResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let query = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingQuery.self) else { return }
        let answer = QueryResultMessage(tape: tape, body: body, node: link)
        query.matches.append(contentsOf: answer.matches)
        query.fallback.append(contentsOf: answer.fallback)
        requests.endIfComplete(query)
    }

    // MARK: Delivery across nodes

    /// One `deliver` carrying all of a peer's recipients of a message.
    func deliver(_ message: RoutedMessage, to node: RemoteNode, handles: [UInt64]) {
        // Every RemoteNode is a PeerLink: candidates come from this cluster.
        guard let link = node as? PeerLink else { return }
        // One frame per chunk of recipients, so even a huge fan-out stays
        // under the peer's frame-body limit (payload ≤ MAX_FRAME_SIZE, plus
        // 9 bytes per handle within the 1 MiB allowance).
        let chunk = 100_000
        if handles.count > chunk {
            var start = 0
            while start < handles.count {
                deliver(message, to: link, handles: Array(handles[start..<min(start + chunk, handles.count)]))
                start += chunk
            }
            return
        }
        let body = DeliverMessage(event: message.event, encoding: message.encoding, nonce: message.nonce,
                                  payload: message.payload, handles: handles).bytes
        link.send(.deliver, body: body)
    }

    /// A peer routed a message to some of our clients.
    func receiveDeliver(from link: PeerLink, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let message = DeliverMessage(tape: tape, body: body) else { return }
        var recipients: [ClientRecord] = []
        for handle in message.handles {
            if let record = store.record(handle: handle) { recipients.append(record) }
        }
        guard !recipients.isEmpty else { return }
        deliverPieces(event: message.event, encoding: message.encoding, nonce: message.nonce, payload: message.payload,
                      to: recipients)
    }

    /// Delivers a message that arrived from a peer to local `recipients`.
    /// The pieces stay where they are (slices of the frame body, see
    /// `PeerPiece`) when every recipient shares their encoding; transcoding
    /// decodes them, so then they are first copied into padded storage.
    func deliverPieces(event: StaticString, encoding: PayloadEncoding, nonce: UnsafeRawBufferPointer?,
                               payload: UnsafeRawBufferPointer, to recipients: [ClientRecord]) {
        let message = RoutedMessage(event: event, encoding: encoding, nonce: nonce, payload: payload)
        if recipients.allSatisfy({ $0.encoding == encoding }) {
            local.deliverLocally(message, to: recipients)
        } else {
            OwnedRoutedMessage(copying: message).withMessage { self.local.deliverLocally($0, to: recipients) }
        }
    }

    // MARK: Forwarded routing (one candidate node)

    /// A forwarded SEND/BROADCAST waiting for its `routeResult`: the number
    /// of clients the peer delivered to (0 if it stays silent or its link
    /// drops: it then counts as having no match).
    final class PendingRoute: PeerRequestTable.Request {
        var delivered = 0
        let completion: (_ delivered: Int) -> Void
        init(completion: @escaping (Int) -> Void) { self.completion = completion }
        override func ended(_ ending: PeerRequestTable.Ending) { completion(ending == .answered ? delivered : 0) }
    }

    /// The only peer that may hold candidates for `query`, when exactly one
    /// may (then resolving there alone gives the same answer as gathering:
    /// the union of candidates is that peer's set).
    func onlyPeer(for query: Query) -> RemoteNode? {
        var only: PeerLink?
        for link in links.values where link.isUp && link.mayHaveClients(of: query.application) {
            if only != nil { return nil }
            only = link
        }
        return only
    }

    /// Sends query and message to `link` in one frame; `completion` gets the
    /// number of clients the peer delivered to (0 after the deadline or if
    /// the link drops: the peer then counts as having no match).
    func forward(_ message: RoutedMessage, query encodedQuery: UnsafeRawBufferPointer, all: Bool, to node: RemoteNode,
                 completion: @escaping (Int) -> Void) {
        // Every RemoteNode is a PeerLink: it came from `onlyPeer`.
        guard let link = node as? PeerLink else { return completion(0) }
        let id = requests.makeID()
        let body = RouteMessage(event: message.event, encoding: message.encoding, all: all, query: encodedQuery,
                                nonce: message.nonce, payload: message.payload).bytes
        let pending = PendingRoute(completion: completion)
        requests.start(pending, id: id, waitingFor: [ObjectIdentifier(link)], deadlines: queryDeadlines)
        link.send(.route, requestID: id, body: body)
    }

    func receiveRouteResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingRoute.self) else { return }
        pending.delivered = Int(RouteResultMessage(tape: tape).delivered)
        requests.endIfComplete(pending)
    }

    /// A peer forwarded a message whose candidates can only be here: resolve
    /// locally (optional, selector, key, random pick — over what is, by the
    /// sender's reasoning, the whole candidate set) and deliver.
    func receiveRoute(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        var delivered = 0
        defer {
            link.send(.routeResult, requestID: requestID, body: RouteResultMessage(delivered: Int64(delivered)).bytes)
        }
        guard let message = RouteMessage(tape: tape, body: body),
              case .success(let query) = compileQuery(message.query, encoding: message.encoding) else { return }
        router.resolveLocally(query, purpose: message.all ? .all : .one) { candidates in
            let recipients = candidates.compactMap { $0.record }
            guard !recipients.isEmpty else { return }
            delivered = recipients.count
            // A JSON payload that is not a string: counted, not delivered (as ever).
            guard let payload = message.payload else { return }
            self.deliverPieces(event: message.event, encoding: message.encoding, nonce: message.nonce, payload: payload,
                               to: recipients)
        }
    }

    /// A query sent by a peer (JSON text in a string, or embedded MessagePack),
    /// through the compiled-query cache.
    func compileQuery(_ bytes: UnsafeRawBufferPointer, encoding: PayloadEncoding) -> Result<Query, QueryError> {
        if encoding == .json {
            // The cache is keyed by the query text; only a miss copies it
            // into a padded buffer (simdjson reads past its input).
            return queryCache.query(for: bytes, tag: 0) {
                var padded = Array(bytes)
                let count = padded.count
                padded.append(contentsOf: repeatElement(0, count: InputBuffer.padding))
                return padded.withUnsafeBytes { raw in
                    var t = DocumentTape()
                    guard (try? JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<count]), into: &t)) != nil, !t.isEmpty else {
                        return .failure(QueryError(detail: "undecodable"))
                    }
                    return Query.parse(t.value(t.root))
                }
            }
        }
        // Keyed by the embedded value's bytes; a miss decodes them again on
        // their own (they decoded once already, as part of the body).
        return queryCache.query(for: bytes, tag: 1) {
            var t = DocumentTape()
            guard (try? MessagePackTapeDecoder.decode(bytes, into: &t)) != nil, !t.isEmpty else {
                return .failure(QueryError(detail: "undecodable"))
            }
            return Query.parse(t.value(t.root))
        }
    }

    // MARK: Client events across nodes (protocol.md §8.10–8.11)

    func broadcastEvent(_ event: StaticString, application: String) {
        guard !links.isEmpty else { return }
        let body = EventMessage(event: event, application: application).bytes
        for link in links.values { link.send(.event, body: body) }
    }

    func receiveEvent(from link: PeerLink, tape: DocumentTape) {
        guard let message = EventMessage(tape: tape) else { return }
        local.announceLocally(event: message.event, application: message.application)
    }
}
