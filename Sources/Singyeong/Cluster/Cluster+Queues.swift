/// Queue frames between nodes (issue 14 point 3). The cluster carries them;
/// the queue service (`QueuePeerHandler`) writes and reads their bodies, so
/// the queue protocol lives in `Queue/` and evolves with it.
extension Cluster: QueuePeers {
    var localNodeID: String { nodeID }

    var reachableNodeIDs: [String] { links.values.filter { $0.isUp && !$0.isLeaving }.compactMap(\.peerNodeID) }

    func mayHaveClients(of application: String?) -> Bool {
        links.values.contains { $0.isUp && $0.mayHaveClients(of: application) }
    }

    /// A request waiting for its `queueReply`.
    final class PendingQueueRequest: PeerRequestTable.Request {
        let completion: (QueuePeerReply?) -> Void
        var reply: QueuePeerReply?
        init(completion: @escaping (QueuePeerReply?) -> Void) { self.completion = completion }
        override func ended(_ ending: PeerRequestTable.Ending) { completion(ending == .answered ? reply : nil) }
    }

    func sendQueueRequest(_ body: [UInt8], to node: String, completion: @escaping (QueuePeerReply?) -> Void) {
        guard let link = links[node], link.isUp else { return completion(nil) }
        let id = requests.makeID()
        let pending = PendingQueueRequest(completion: completion)
        requests.start(pending, id: id, waitingFor: [ObjectIdentifier(link)], deadlines: queryDeadlines)
        link.send(.queueRequest, requestID: id, body: body)
    }

    @discardableResult
    func sendQueueMessage(_ body: [UInt8], to node: String) -> Bool {
        guard let link = links[node], link.isUp else { return false }
        link.send(.queueMessage, body: body)
        return true
    }

    func receiveQueueRequest(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let node = link.peerNodeID else { return }
        guard let handler = queueHandler else {
            var w = FrameWriter(encoding: .msgpack)
            w.beginObject(count: 1)
            w.key("err"); w.string("queues are not available on node \(nodeID)")
            w.endObject()
            link.send(.queueReply, requestID: requestID, body: w.bytes)
            return
        }
        handler.receiveQueueRequest(from: node, tape: tape, body: body) { [weak link] reply in
            guard let link, link.isUp else { return }
            link.send(.queueReply, requestID: requestID, body: reply)
        }
    }

    func receiveQueueReply(from link: PeerLink, requestID: UInt64, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: PendingQueueRequest.self) else { return }
        // The completion runs inside `endIfComplete`, while tape and body are still this frame's.
        pending.reply = QueuePeerReply(tape: tape, body: body)
        requests.endIfComplete(pending)
    }

    func receiveQueueMessage(from link: PeerLink, tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let node = link.peerNodeID else { return }
        queueHandler?.receiveQueueMessage(from: node, tape: tape, body: body)
    }
}
