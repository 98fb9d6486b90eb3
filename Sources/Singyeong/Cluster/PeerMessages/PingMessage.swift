/// The body of a `ping` frame: `{"n": clients}`, the sender's client count
/// (for load balancing). Decoding gives nil unless the body is a map whose
/// `n` is an integer (the receiver then keeps its last report; it answers
/// `pong` either way).
struct PingMessage: PeerMessageBody, Equatable {
    var clientCount: Int64

    init(clientCount: Int64) { self.clientCount = clientCount }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 1)
        w.key("n"); w.int(clientCount)
        w.endObject()
    }

    init?(tape: DocumentTape) {
        guard let root = tape.rootObject, let n = tape.member(of: root, named: "n").flatMap({ tape.int64($0) }) else { return nil }
        clientCount = n
    }
}
