// libFuzzer harness for the queue frames between nodes (what a peer sends
// to the queue service: `QueuePeerMessage`). Built by scripts/fuzz.sh
// (target `queuepeer`) with the MessagePack tape decoder the peer link uses.
//
// Checks: reading an operation, a message or a reply never traps, every
// piece it returns lies inside the body, and what decodes re-encodes to a
// body that decodes to the same operation or reply.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQueuePeerMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = UnsafeRawBufferPointer(start: data, count: size)
    var tape = DocumentTape()
    guard (try? MessagePackTapeDecoder.decode(body, into: &tape)) != nil, !tape.isEmpty else { return 0 }
    func inside(_ piece: UnsafeRawBufferPointer?) {
        guard let piece, let base = piece.baseAddress, let start = body.baseAddress else { return }
        precondition(base >= start && base + piece.count <= start + body.count, "piece outside the body")
    }
    // A reply re-encodes to the same reply (flags included).
    let reply = QueuePeerMessage.reply(tape: tape)
    var replyTape = DocumentTape()
    precondition((try? MessagePackTapeDecoder.decode(copying: QueuePeerMessage.encode(reply), into: &replyTape)) != nil,
                 "re-encoded reply undecodable")
    precondition(QueuePeerMessage.reply(tape: replyTape) == reply, "a reply changed through encode and decode")
    if case let .deliver(_, _, _, _, _, nonce, payload)? = QueuePeerMessage.message(tape: tape, body: body) {
        inside(nonce)
        inside(payload)
    }
    guard let operation = QueuePeerMessage.operation(tape: tape, body: body) else { return 0 }
    if case let .enqueue(_, _, target, nonce, payload) = operation {
        inside(target)
        inside(nonce)
        inside(payload)
    }
    let again = QueuePeerMessage.encode(operation)
    var tape2 = DocumentTape()
    precondition((try? MessagePackTapeDecoder.decode(copying: again, into: &tape2)) != nil, "re-encoded body undecodable")
    let same: Bool = again.withUnsafeBytes { raw in
        switch (operation, QueuePeerMessage.operation(tape: tape2, body: raw)) {
        case let (.enqueue(q1, e1, t1, n1, p1), .enqueue(q2, e2, t2, n2, p2)?):
            return q1 == q2 && e1 == e2 && t1.elementsEqual(t2) && p1.elementsEqual(p2)
                && (n1 == nil) == (n2 == nil) && (n1.map { n2!.elementsEqual($0) } ?? true)
        case let (.request(q1, c1), .request(q2, c2)?):
            return q1 == q2 && c1.handle == c2.handle && c1.sequence == c2.sequence && c1.application == c2.application
                && c1.client == c2.client && c1.encoding == c2.encoding && c1.metadata == c2.metadata
        case let (.cancel(q1, h1), .cancel(q2, h2)?): return q1 == q2 && h1 == h2
        case let (.acknowledge(q1, i1), .acknowledge(q2, i2)?): return q1 == q2 && i1 == i2
        default: return false
        }
    }
    precondition(same, "an operation changed through encode and decode")
    return 0
}
