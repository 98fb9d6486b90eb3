import Logging

/// The HTTP proxy and discovery across nodes (cluster.md §4.5, rest.md §4
/// and §6): a proxied request runs on the node holding the chosen client and
/// its answer travels back; discovery asks every visible node for the
/// applications whose clients carry the requested tags.
extension Cluster {
    /// A proxied request waiting for the peer that runs it: the upstream's
    /// answer, 504 if the peer stays silent, 502 if its link drops.
    final class PendingProxy: PeerRequestTable.Request {
        let link: ObjectIdentifier
        let nodeID: String
        let logger: Logger
        var response: ForwardedProxyOutcome?
        let completion: (ForwardedProxyOutcome) -> Void

        init(link: ObjectIdentifier, nodeID: String, logger: Logger, completion: @escaping (ForwardedProxyOutcome) -> Void) {
            self.link = link
            self.nodeID = nodeID
            self.logger = logger
            self.completion = completion
        }

        override func ended(_ ending: PeerRequestTable.Ending) {
            switch ending {
            case .answered:
                completion(response ?? .failed(reason: "node \(nodeID) holding the client sent no answer", status: 502))
            case .deadline:
                logger.warning("proxied request: peer did not answer in time", metadata: ["node": "\(LogText.escape(nodeID))"])
                completion(.failed(reason: "node \(nodeID) holding the client did not answer in time", status: 504))
            case .linkLost(let reason):
                logger.warning("proxied request lost with its peer link", metadata: ["node": "\(LogText.escape(nodeID))", "reason": "\(reason)"])
                completion(.failed(reason: "node \(nodeID) holding the client went away (\(reason))", status: 502))
            }
        }
    }

    /// A discovery request waiting for peers: the union of their answers
    /// and this node's own (silent peers count as none).
    final class PendingTags: PeerRequestTable.Request {
        var applications: Set<String>
        let completion: (Set<String>) -> Void

        init(local: Set<String>, completion: @escaping (Set<String>) -> Void) {
            applications = local
            self.completion = completion
        }

        override func ended(_ ending: PeerRequestTable.Ending) { completion(applications) }
    }

    /// An upstream request this node runs for a peer.
    struct ServedProxyKey: Hashable {
        let link: ObjectIdentifier
        let requestID: UInt64
    }

    // MARK: Proxy

    /// Asks `link`'s node to run `request` for its client `handle`. The
    /// caller gets the upstream's answer, or 502 if the link drops and 504
    /// if the node stays silent past PROXY_TIMEOUT plus a margin — never a
    /// hang.
    /// Returns the request id to cancel it with (nil when it failed at once).
    @discardableResult
    func forwardProxy(_ request: ForwardedProxyRequest, handle: UInt64, callerIP: String, to node: RemoteNode,
                      completion: @escaping (ForwardedProxyOutcome) -> Void) -> UInt64? {
        // Every RemoteNode is a PeerLink: candidates come from this cluster.
        guard let link = node as? PeerLink else {
            completion(.failed(reason: "no matches", status: 400))
            return nil
        }
        let nodeID = link.peerNodeID ?? "?"
        // The candidate may come from a link that closed after answering.
        guard link.isUp else {
            completion(.failed(reason: "node \(nodeID) holding the client went away", status: 502))
            return nil
        }
        let linkID = ObjectIdentifier(link)
        guard requests.count(of: PendingProxy.self, waitingFor: linkID) < maxProxiesPerLink else {
            logger.warning("proxied requests to a peer at their bound; refusing", metadata: ["node": "\(LogText.escape(nodeID))", "bound": "\(maxProxiesPerLink)"])
            completion(.failed(reason: "too many proxied requests in flight to node \(nodeID)", status: 503))
            return nil
        }
        let id = requests.makeID()
        let body = ProxyMessage(handle: handle, method: request.method, route: request.route, headers: request.headers,
                                callerIP: callerIP, body: request.body).bytes
        // The peer would fail the whole link over an oversized frame (its
        // limit is ours when, as documented, nodes share their size settings).
        guard body.count <= maxFrameBody else {
            completion(.failed(reason: "request too large to forward to node \(nodeID)", status: 413))
            return nil
        }
        let pending = PendingProxy(link: linkID, nodeID: nodeID, logger: logger, completion: completion)
        requests.start(pending, id: id, waitingFor: [linkID], deadlines: proxyDeadlines)
        link.send(.proxy, requestID: id, body: body)
        return id
    }

    /// The caller of forwarded request `id` left: forget it and tell the
    /// peer to stop the upstream request.
    func cancelForwardedProxy(_ id: UInt64) {
        guard let pending = requests.cancel(id) as? PendingProxy else { return }
        membership.allLinks.first { ObjectIdentifier($0) == pending.link }?.send(.proxyCancel, requestID: id, body: [])
    }

    func receiveProxyCancel(from link: PeerLink, requestID: UInt64) {
        servedProxies.removeValue(forKey: ServedProxyKey(link: ObjectIdentifier(link), requestID: requestID))?.cancel()
    }


    /// A peer asks this node to run a proxied request for one of its clients.
    func receiveProxy(from link: PeerLink, requestID: UInt64, tape: DocumentTape, tail: UnsafeRawBufferPointer) {
        let served = ServedProxyKey(link: ObjectIdentifier(link), requestID: requestID)
        let reply: (HTTPResponse) -> Void = { [weak self, weak link] response in
            self?.servedProxies[served] = nil
            guard let link else { return }
            var body = Cluster.proxyResultBody(response)
            if body.count > link.cluster.maxFrameBody {
                // Cannot happen with shared limits (the body is bounded by
                // PROXY_MAX_RESPONSE_SIZE); never let it break the link.
                body = Cluster.proxyResultBody(HTTPResponse.errorList("response too large to relay between nodes", status: 502))
            }
            link.send(.proxyResult, requestID: requestID, body: body)
        }
        guard let message = ProxyMessage(tape: tape, tail: tail) else {
            logger.warning("malformed proxy frame from peer", metadata: ["node": "\(LogText.escape(link.peerNodeID ?? "?"))"])
            reply(HTTPResponse.errorList("malformed proxied request between nodes", status: 502))
            return
        }
        guard let record = store.record(handle: message.handle), let proxyRunner else {
            // The chosen client left between the choice and now.
            reply(HTTPResponse.errorList("no matches"))
            return
        }
        // Completions never run inside execute, so the transfer is recorded
        // before its reply can remove it.
        let request = ForwardedProxyRequest(method: message.method, route: message.route, headers: message.headers, body: message.body)
        if let transfer = proxyRunner.run(request, on: record, callerIP: message.callerIP, completion: reply) {
            servedProxies[served] = transfer
        }
    }

    /// The link that asked for these upstream requests is gone: nobody can
    /// receive their answers, so they stop now.
    func cancelServedProxies(for link: PeerLink) {
        let id = ObjectIdentifier(link)
        for (key, transfer) in servedProxies where key.link == id {
            servedProxies[key] = nil
            transfer.cancel()
        }
    }

    /// The answer to a request this node forwarded.
    func receiveProxyResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape, tail: UnsafeRawBufferPointer) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingProxy.self) else { return }
        if let message = ProxyResultMessage(tape: tape, tail: tail) {
            // Filtered again where it is relayed: the peer is trusted, but the framing is ours.
            pending.response = .relayed(status: Int(message.status), headers: message.headers, body: message.body)
        } else {
            pending.response = .failed(reason: "malformed proxied response from node \(pending.nodeID)", status: 502)
        }
        requests.endIfComplete(pending)
    }

    /// A `proxyResult` body: status and headers as the header, the body raw.
    static func proxyResultBody(_ response: HTTPResponse) -> [UInt8] {
        ProxyResultMessage(status: Int64(response.status), headers: response.headers, body: response.body).bytes
    }

    // MARK: Discovery

    /// Applications with a non-restricted client holding every tag in
    /// `tags`, on this node and every visible peer (silent peers count as
    /// none after CLUSTER_QUERY_TIMEOUT_MS).
    func gatherTags(_ tags: [String], local: Set<String>, completion: @escaping (Set<String>) -> Void) {
        let id = requests.makeID()
        let body = TagsMessage(tags: tags).bytes
        let asked = links.values.filter { $0.isUp && !$0.isLeaving }
        let query = PendingTags(local: local, completion: completion)
        requests.start(query, id: id, waitingFor: Set(asked.map { ObjectIdentifier($0) }), deadlines: queryDeadlines)
        for link in asked where link.isUp { link.send(.tags, requestID: id, body: body) }
        requests.endIfComplete(query)
    }

    func answerTags(from link: PeerLink, requestID: UInt64, tape: DocumentTape) {
        let tags = TagsMessage(tape: tape).tags
        let applications = tags.isEmpty ? [] : store.applications(withTags: tags)
        link.send(.tagsResult, requestID: requestID, body: TagsResultMessage(applications: applications).bytes)
    }

    func receiveTagsResult(from link: PeerLink, requestID: UInt64, tape: DocumentTape) {
        guard let query = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingTags.self) else { return }
        query.applications.formUnion(TagsResultMessage(tape: tape).applications)
        requests.endIfComplete(query)
    }
}
