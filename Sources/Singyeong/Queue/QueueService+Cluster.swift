/// Queues in a cluster (issue 14 point 3): one owner per queue, the node
/// holding its lease in the store; the other nodes forward their clients'
/// queue operations to it over the peer links.
///
/// **Where an operation goes.** Here, if this node holds the queue (or is
/// taking it); else to the node known to hold it (learned from the store or
/// a peer's reply, while that node is reachable); else to the preferred
/// owner, by rendezvous hashing of the queue name over this node and the
/// reachable peers, which spreads queues evenly and moves few of them when a
/// node comes or goes. The node an operation arrives at serves it: it takes
/// the lease if it is free, or answers with the holder, or (holder out of
/// reach) with an error. It never forwards again, so nothing loops. A lease
/// is kept while the queue is in use (no hand-off when a node joins: that
/// would move busy queues for no gain in safety).
///
/// **Remote consumers.** A QUEUE_REQUEST from another node's client makes a
/// `Shadow` here: a `ClientRecord` with the client's ids and metadata (sent
/// with the request), so dispatch attempts stay synchronous. Its node sends
/// the request again every GC interval while the client waits (same sequence
/// number: it keeps its place and is never served twice), so a new owner
/// learns about it after a takeover, and a shadow not refreshed for 3
/// intervals is dropped (its node is gone or asks another owner). The
/// metadata travels with the first request to an owner and after each
/// change; repeats leave it out once the owner said it keeps it, and an
/// owner without the shadow asks for it (`QueuePeerMessage.Reply`). A
/// delivery goes to the client's node as a `queueMessage`.
///
/// Honest limits: during an owner change a consumer may be offered one more
/// message than it asked for (its request reached both owners); the
/// `optional` fallback only knows the clients of this node and the waiting
/// ones of others; a partitioned node cannot use a queue held across the cut.
extension QueueService {
    /// A consumer of this node waiting on a queue held elsewhere.
    struct RemoteWait {
        let record: ClientRecord
        let sequence: UInt64
        /// Where the request went last.
        var sentTo: String
        /// The owner known to hold the client's current metadata: repeats
        /// to it leave the metadata out. Nil after a change or a silence.
        var metadataKeptBy: String? = nil
    }

    /// Which node's consumer a shadow stands for.
    struct ShadowKey: Hashable {
        let node: String
        let handle: UInt64
    }

    /// Another node's consumer, waiting here.
    final class Shadow {
        let key: ShadowKey
        let record: ClientRecord
        /// The sequence number of each queue's request (the one waiting or
        /// last served), so a repeat is never served twice.
        var sequences: [String: UInt64] = [:]
        var served: [String: UInt64] = [:]
        /// Loop ms of its node's last word about it.
        var lastSeen: Int64

        init(key: ShadowKey, record: ClientRecord, now: Int64) {
            self.key = key
            self.record = record
            lastSeen = now
        }
    }

    // MARK: Where operations go

    /// The node that serves operations on `name`; nil for this one.
    func remoteOwner(of name: String) -> String? {
        guard let peers else { return nil }
        if let q = queues[name], q.isLoaded || q.isLoading { return nil }
        let reachable = peers.reachableNodeIDs
        if let holder = redirects[name] {
            if reachable.contains(holder) { return holder }
            redirects[name] = nil
        }
        let preferred = QueueOwnership.preferredOwner(of: name, among: reachable, local: peers.localNodeID)
        return preferred == peers.localNodeID ? nil : preferred
    }

    /// The store says `holder` has the lease of `q` (being acquired here):
    /// when `holder` is reachable, operations go there from now on and what
    /// waited here follows them. False when nothing changed.
    func heldElsewhere(_ q: MessageQueue, by holder: String) -> Bool {
        guard let peers, holder != peers.localNodeID, peers.reachableNodeIDs.contains(holder) else { return false }
        redirects[q.name] = holder
        let waiting = q.waiting
        for id in forget(q.name) { sendAcknowledge(queue: q.name, id: id, to: holder) { _ in } }
        for record in waiting {
            if let shadow = shadowOfRecord[ObjectIdentifier(record)] {
                // Its node asks again within an interval and hears of the holder.
                unlist(q.name, from: shadow.record)
            } else {
                addRemoteWait(queue: q.name, record: record, to: holder, answer: { _ in })
            }
        }
        logger.info("queue is held by another node; forwarding to it",
                    metadata: ["queue": "\(LogText.escape(q.name))", "holder": "\(LogText.escape(holder))"])
        return true
    }

    // MARK: QueueOperations (what this node's clients ask)

    func enqueue(queue name: String, target: Query, targetBytes: UnsafeRawBufferPointer, message: RoutedMessage,
                 from producer: ClientRecord, answer: @escaping (QueueOutcome) -> Void) {
        guard let owner = remoteOwner(of: name), let peers else {
            return enqueueHere(queue: name, target: target, targetBytes: targetBytes, message: message, answer: answer)
        }
        let body = QueuePeerMessage.encode(.enqueue(queue: name, encoding: message.encoding, target: targetBytes,
                                                    nonce: message.nonce, payload: message.payload))
        peers.sendQueueRequest(body, to: owner) { [self] reply in
            switch self.outcome(of: reply, queue: name, from: owner) {
            case .done: answer(.done)
            case .refused(let reason): answer(.refused(reason))
            case .moved(let holder):
                answer(.refused("the queue moved to node \(holder) while this message was on its way; nothing stored, send it again"))
            }
        }
    }

    func request(queue name: String, by consumer: ClientRecord, answer: @escaping (QueueOutcome) -> Void) {
        let owner = remoteOwner(of: name)
        logger.debug("queue request", metadata: ["queue": "\(LogText.escape(name))", "owner": "\(owner ?? "here")",
                                                 "client": "\(LogText.escape(consumer.clientID))"])
        guard let owner else {
            let outcome = requestHere(queue: name, by: consumer)
            if case .refused = outcome { answer(outcome) }
            return
        }
        let listed = consumer.waitingQueues.contains(name)
        if !listed && consumer.waitingQueues.count >= limits.maxQueuesPerClient {
            return answer(.refused("waiting on too many queues: \(limits.maxQueuesPerClient)"))
        }
        if remoteWaits[name]?[consumer.handle] != nil { return }  // a repeated request keeps its place
        if !listed { consumer.waitingQueues.append(name) }
        addRemoteWait(queue: name, record: consumer, to: owner, answer: answer)
    }

    func cancelRequest(queue name: String, by consumer: ClientRecord) {
        if let wait = remoteWaits[name]?.removeValue(forKey: consumer.handle) {
            if remoteWaits[name]?.isEmpty == true { remoteWaits[name] = nil }
            unlist(name, from: consumer)
            peers?.sendQueueRequest(QueuePeerMessage.encode(.cancel(queue: name, handle: consumer.handle)), to: wait.sentTo) { _ in }
            return
        }
        cancelHere(queue: name, by: consumer)
    }

    func acknowledge(queue name: String, id: String, answer: @escaping (QueueOutcome) -> Void) {
        guard let owner = remoteOwner(of: name) else { return acknowledgeHere(queue: name, id: id, answer: answer) }
        sendAcknowledge(queue: name, id: id, to: owner, answer: answer)
    }

    private func sendAcknowledge(queue name: String, id: String, to owner: String, answer: @escaping (QueueOutcome) -> Void) {
        peers?.sendQueueRequest(QueuePeerMessage.encode(.acknowledge(queue: name, id: id)), to: owner) { [self] reply in
            switch self.outcome(of: reply, queue: name, from: owner) {
            case .done: answer(.done)
            case .refused(let reason): answer(.refused("\(reason); the ACK was not recorded, the message will be delivered again"))
            case .moved(let holder): self.sendAcknowledge(queue: name, id: id, to: holder) { _ in }
            }
        }
    }

    /// What a peer's reply came to: done, refused, or "ask `holder`"
    /// (remembered; once per operation, so replies cannot bounce it around).
    private enum PeerOutcome {
        case done
        case refused(String)
        case moved(String)
    }

    private func outcome(of reply: QueuePeerReply?, queue name: String, from owner: String) -> PeerOutcome {
        guard let reply else { return .refused("the queue's node \(owner) did not answer") }
        let r = QueuePeerMessage.reply(tape: reply.tape)
        if let error = r.error { return .refused(error) }
        if let holder = r.holder {
            guard holder != owner, holder != peers?.localNodeID, peers?.reachableNodeIDs.contains(holder) == true else {
                return .refused("the queue is held by node \(holder), which this node cannot reach")
            }
            redirects[name] = holder
            return .moved(holder)
        }
        return .done
    }

    // MARK: Consumers waiting on queues held elsewhere

    private func addRemoteWait(queue name: String, record: ClientRecord, to owner: String,
                               answer: @escaping (QueueOutcome) -> Void) {
        nextSequence += 1
        let wait = RemoteWait(record: record, sequence: nextSequence, sentTo: owner)
        remoteWaits[name, default: [:]][record.handle] = wait
        sendRequest(wait, queue: name, answer: answer)
    }

    /// Sends (or sends again) `wait`'s request to its owner. An error ends
    /// the wait (the client hears it once, through `answer`); a holder
    /// elsewhere redirects it at once.
    private func sendRequest(_ wait: RemoteWait, queue name: String, answer: @escaping (QueueOutcome) -> Void) {
        guard let peers else { return }
        let record = wait.record
        let owner = wait.sentTo
        let withMetadata = wait.metadataKeptBy != owner
        let consumer = QueuePeerMessage.Consumer(handle: record.handle, sequence: wait.sequence,
                                                 application: record.applicationID, client: record.clientID,
                                                 encoding: record.encoding, metadata: withMetadata ? record.metadata : nil)
        peers.sendQueueRequest(QueuePeerMessage.encode(.request(queue: name, consumer: consumer)), to: owner) {
            [self] reply in
            guard var current = self.remoteWaits[name]?[record.handle], current.sequence == wait.sequence else { return }
            guard let reply else {
                // Silence: the next refresh asks again, with the metadata.
                current.metadataKeptBy = nil
                self.remoteWaits[name]?[record.handle] = current
                return
            }
            let flags = QueuePeerMessage.reply(tape: reply.tape)
            if flags.needsMetadata && !withMetadata {
                // The owner lost the shadow (it dropped it as silent, or
                // lost the link meanwhile): send everything again.
                current.metadataKeptBy = nil
                self.remoteWaits[name]?[record.handle] = current
                return self.sendRequest(current, queue: name, answer: answer)
            }
            switch self.outcome(of: reply, queue: name, from: owner) {
            case .done:
                if withMetadata && flags.keepsMetadata && current.sentTo == owner {
                    current.metadataKeptBy = owner
                    self.remoteWaits[name]?[record.handle] = current
                }
            case .refused(let reason):
                self.remoteWaits[name]?[record.handle] = nil
                if self.remoteWaits[name]?.isEmpty == true { self.remoteWaits[name] = nil }
                self.unlist(name, from: record)
                answer(.refused(reason))
            case .moved(let holder):
                var moved = current
                moved.sentTo = holder
                self.remoteWaits[name]?[record.handle] = moved
                self.sendRequest(moved, queue: name, answer: answer)
            }
        }
    }

    /// Every GC interval: each waiting request goes again to whoever serves
    /// its queue now (a request whose queue became this node's is served
    /// here); shadows whose node fell silent are dropped.
    func refreshRemote() {
        guard peers != nil else { return }
        for (name, waits) in remoteWaits {
            let owner = remoteOwner(of: name)
            // The metadata is an autoclosure: counted only when tracing.
            logger.trace("queue requests sent again", metadata: [
                "queue": "\(LogText.escape(name))", "owner": "\(owner ?? "here")", "count": "\(waits.count)",
                "without_metadata": "\(owner == nil ? 0 : waits.values.reduce(0) { $0 + ($1.metadataKeptBy == owner ? 1 : 0) })",
            ])
            for (handle, var wait) in waits {
                guard let owner else {
                    remoteWaits[name]?[handle] = nil
                    _ = requestHere(queue: name, by: wait.record)
                    continue
                }
                wait.sentTo = owner
                remoteWaits[name]?[handle] = wait
                sendRequest(wait, queue: name, answer: { _ in })
            }
            if remoteWaits[name]?.isEmpty == true { remoteWaits[name] = nil }
        }
        // Holders learned for queues this node no longer touches are
        // learned again on demand: the map stays bounded.
        if redirects.count > limits.maxRedirects { redirects.removeAll(keepingCapacity: true) }
        let horizon = now - 3 * limits.gcInterval
        for shadow in Array(shadows.values) where shadow.lastSeen < horizon {
            dropShadow(shadow)
        }
    }

    func metadataChangedRemotely(of record: ClientRecord) {
        for name in record.waitingQueues {
            guard var wait = remoteWaits[name]?[record.handle] else { continue }
            wait.metadataKeptBy = nil
            remoteWaits[name]?[record.handle] = wait
            sendRequest(wait, queue: name, answer: { _ in })
        }
    }

    func clientGoneRemotely(_ record: ClientRecord) {
        var told: Set<String> = []
        for name in record.waitingQueues {
            guard let wait = remoteWaits[name]?.removeValue(forKey: record.handle) else { continue }
            if remoteWaits[name]?.isEmpty == true { remoteWaits[name] = nil }
            if told.insert(wait.sentTo).inserted {
                peers?.sendQueueMessage(QueuePeerMessage.encode(.gone(handle: record.handle)), to: wait.sentTo)
            }
        }
    }

    // MARK: Other nodes' consumers waiting here

    private func shadow(from node: String, _ c: QueuePeerMessage.Consumer) -> Shadow {
        let key = ShadowKey(node: node, handle: c.handle)
        if let existing = shadows[key], existing.record.applicationID == c.application, existing.record.clientID == c.client {
            if let metadata = c.metadata { existing.record.metadata = metadata }
            existing.lastSeen = now
            return existing
        }
        if let stale = shadows[key] { dropShadow(stale) }
        // Without metadata only for a shadow that exists (checked by the caller).
        let record = ClientRecord(applicationID: c.application, clientID: c.client, handle: c.handle, restricted: false,
                                  encoding: c.encoding, receivesClientUpdates: false, socketIP: nil, tags: [],
                                  metadata: c.metadata ?? ClientMetadata(entries: []), session: nil)
        let made = Shadow(key: key, record: record, now: now)
        shadows[key] = made
        shadowOfRecord[ObjectIdentifier(record)] = made
        return made
    }

    private func dropShadow(_ shadow: Shadow) {
        shadows[shadow.key] = nil
        shadowOfRecord[ObjectIdentifier(shadow.record)] = nil
        for name in shadow.record.waitingQueues { cancelHere(queue: name, by: shadow.record) }
        shadow.record.waitingQueues = []
    }

    func deliverRemotely(_ message: QueuedMessage, from queue: MessageQueue, to shadow: Shadow) {
        let sequence = shadow.sequences[queue.name] ?? 0
        shadow.served[queue.name] = sequence
        let sent: Bool = message.content.withMessage { content in
            peers?.sendQueueMessage(QueuePeerMessage.encode(.deliver(queue: queue.name, handle: shadow.key.handle,
                                                                     sequence: sequence, id: message.id,
                                                                     encoding: content.encoding, nonce: content.nonce,
                                                                     payload: content.payload)),
                                    to: shadow.key.node) ?? false
        }
        // Unsent: unacknowledged here, so it comes back after the timeouts.
        if !sent { dropShadow(shadow) }
    }
}

extension QueueService: QueuePeerHandler {
    func receiveQueueRequest(from node: String, tape: DocumentTape, body: UnsafeRawBufferPointer,
                             reply: @escaping ([UInt8]) -> Void) {
        guard let operation = QueuePeerMessage.operation(tape: tape, body: body) else {
            logger.warning("malformed queue request from a peer", metadata: ["node": "\(LogText.escape(node))"])
            return reply(QueuePeerMessage.encode(QueuePeerMessage.Reply(error: "malformed queue request")))
        }
        func answer(_ outcome: QueueOutcome) {
            switch outcome {
            case .done: reply(QueuePeerMessage.encode(QueuePeerMessage.Reply()))
            case .refused(let reason): reply(QueuePeerMessage.encode(QueuePeerMessage.Reply(error: reason)))
            }
        }
        let name: String
        switch operation {
        case .enqueue(let queue, _, _, _, _), .acknowledge(let queue, _), .cancel(let queue, _), .request(let queue, _):
            name = queue
        }
        // Served here unless the queue is known to be held by a reachable node.
        if let holder = redirects[name], queues[name] == nil, peers?.reachableNodeIDs.contains(holder) == true {
            if case .cancel(_, let handle) = operation, let shadow = shadows[ShadowKey(node: node, handle: handle)] {
                cancelHere(queue: name, by: shadow.record)
            }
            return reply(QueuePeerMessage.encode(QueuePeerMessage.Reply(holder: holder)))
        }
        switch operation {
        case let .enqueue(queue, encoding, targetBytes, nonce, payload):
            guard let target = compileTarget(targetBytes, encoding: encoding) else {
                return answer(.refused("invalid query"))
            }
            enqueueHere(queue: queue, target: target, targetBytes: targetBytes,
                        message: RoutedMessage(event: "QUEUE", encoding: encoding, nonce: nonce, payload: payload),
                        answer: { answer($0) })
        case let .request(queue, consumer):
            let known = shadows[ShadowKey(node: node, handle: consumer.handle)]
            if consumer.metadata == nil
                && (known?.record.applicationID != consumer.application || known?.record.clientID != consumer.client) {
                return reply(QueuePeerMessage.encode(QueuePeerMessage.Reply(needsMetadata: true)))
            }
            if known == nil && shadows.count >= limits.maxShadows {
                return answer(.refused("too many consumers of other nodes waiting on this node: \(limits.maxShadows)"))
            }
            // A done request says the metadata is kept (the shadow holds it).
            func answerRequest(_ outcome: QueueOutcome) {
                guard case .done = outcome else { return answer(outcome) }
                reply(QueuePeerMessage.encode(QueuePeerMessage.Reply(keepsMetadata: true)))
            }
            let shadow = shadow(from: node, consumer)
            if let served = shadow.served[queue], served >= consumer.sequence { return answerRequest(.done) }
            shadow.sequences[queue] = consumer.sequence
            if shadow.sequences.count > 2 * limits.maxQueuesPerClient {
                // A consumer that asked many queues over time: keep the
                // numbers of the queues it waits on (and this one) only.
                let keep = Set(shadow.record.waitingQueues + [queue])
                shadow.sequences = shadow.sequences.filter { keep.contains($0.key) }
                shadow.served = shadow.served.filter { keep.contains($0.key) }
            }
            let wasWaiting = queues[queue]?.isWaiting(shadow.record) ?? false
            let outcome = requestHere(queue: queue, by: shadow.record)
            if wasWaiting && consumer.metadata != nil {
                queues[queue]?.metadataChanged(of: shadow.record, now: now, context: self)
            }
            answerRequest(outcome)
        case let .cancel(queue, handle):
            if let shadow = shadows[ShadowKey(node: node, handle: handle)] { cancelHere(queue: queue, by: shadow.record) }
            answer(.done)
        case let .acknowledge(queue, id):
            acknowledgeHere(queue: queue, id: id) { answer($0) }
        }
    }

    func receiveQueueMessage(from node: String, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        switch QueuePeerMessage.message(tape: tape, body: body) {
        case let .deliver(queue, handle, sequence, id, encoding, nonce, payload)?:
            if let wait = remoteWaits[queue]?[handle], wait.sequence == sequence {
                remoteWaits[queue]?[handle] = nil
                if remoteWaits[queue]?.isEmpty == true { remoteWaits[queue] = nil }
            }
            // Delivered even after a cancel crossed it: it is unacknowledged
            // at the owner either way, and the client can ACK it.
            guard let record = router.store.record(handle: handle), let session = record.session else { return }
            unlist(queue, from: record)
            deliver(queue: queue, id: id, encoding: encoding, nonce: nonce, payload: payload, to: session)
        case let .gone(handle)?:
            if let shadow = shadows[ShadowKey(node: node, handle: handle)] { dropShadow(shadow) }
        case nil:
            logger.warning("malformed queue message from a peer", metadata: ["node": "\(LogText.escape(node))"])
        }
    }

    func queuePeerGone(_ node: String) {
        for shadow in Array(shadows.values) where shadow.key.node == node { dropShadow(shadow) }
        for (name, holder) in redirects where holder == node { redirects[name] = nil }
    }

    /// A target from a peer, through the query cache (JSON is copied into
    /// padded storage for the decoder only on a miss).
    private func compileTarget(_ bytes: UnsafeRawBufferPointer, encoding: PayloadEncoding) -> Query? {
        let result = queryCache.query(for: bytes, tag: encoding == .json ? 0 : 1) {
            var tape = DocumentTape()
            let decoded: Bool
            switch encoding {
            case .json: decoded = (try? JSONTapeDecoder.decode(copying: bytes, into: &tape)) != nil
            case .msgpack: decoded = (try? MessagePackTapeDecoder.decode(copying: bytes, into: &tape)) != nil
            }
            guard decoded, !tape.isEmpty else { return .failure(QueryError(detail: "target: undecodable")) }
            return Query.parse(tape.value(tape.root), context: "target")
        }
        if case .success(let query) = result { return query }
        return nil
    }
}

/// Which node should own a queue: rendezvous (highest random weight)
/// hashing of the name over the live nodes, so queues spread evenly and a
/// node coming or going moves only the queues it wins or held.
enum QueueOwnership {
    static func preferredOwner(of name: String, among peers: [String], local: String) -> String {
        var best = local
        var bestScore = score(local, name)
        for node in peers {
            let s = score(node, name)
            if s > bestScore || (s == bestScore && node < best) {
                best = node
                bestScore = s
            }
        }
        return best
    }

    /// FNV-1a over node, a 0 byte and name, finished with SplitMix64's mixer
    /// (FNV alone mixes its last bytes poorly).
    static func score(_ node: String, _ name: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in node.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h = (h ^ 0) &* 0x100_0000_01b3
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }
}
