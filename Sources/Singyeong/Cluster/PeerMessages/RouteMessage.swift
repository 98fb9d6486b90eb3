/// The body of a `route` frame: a SEND or BROADCAST together with its
/// query, for the one peer that can hold its candidates. `{"t": event,
/// "enc": 0|1, "all": broadcast, "q": query, "nonce"?: nonce, "payload":
/// payload}`, keys in that order; `q`, `nonce` and `payload` are
/// `PeerPiece`s in encoding `enc`. Answered by `routeResult`.
///
/// Decoding gives nil (the receiver answers 0 delivered) when the body is
/// not a map, `t` is not a string, `q` or `payload` is missing, or a JSON
/// `q` is not a string. `t` other than "BROADCAST" is SEND; a missing or
/// non-boolean `all` is false; a JSON `nonce` that is not a string counts as
/// none. A JSON `payload` that is not a string decodes to a nil `payload`:
/// the receiver still resolves the query and reports its recipients, but
/// delivers nothing (the behaviour before the bodies had types). The
/// pieces are slices of the frame body, valid only while it is handled.
struct RouteMessage: PeerMessageBody {
    /// SEND or BROADCAST.
    var event: StaticString
    var encoding: PayloadEncoding
    /// Deliver to every candidate (BROADCAST) rather than one.
    var all: Bool
    var query: UnsafeRawBufferPointer
    var nonce: UnsafeRawBufferPointer?
    var payload: UnsafeRawBufferPointer?

    init(event: StaticString, encoding: PayloadEncoding, all: Bool, query: UnsafeRawBufferPointer,
         nonce: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer) {
        self.event = event
        self.encoding = encoding
        self.all = all
        self.query = query
        self.nonce = nonce
        self.payload = payload
    }

    /// Writes the body; `payload` must be set (only a decoded message lacks it).
    func encode(into w: inout FrameWriter) {
        w.beginObject(count: nonce == nil ? 5 : 6)
        w.key("t"); w.string(event)
        w.key("enc"); w.int(PeerPiece.encodingCode(encoding))
        w.key("all"); w.bool(all)
        w.key("q"); PeerPiece.write(query, encoding, into: &w)
        if let nonce { w.key("nonce"); PeerPiece.write(nonce, encoding, into: &w) }
        w.key("payload"); PeerPiece.write(payload!, encoding, into: &w)
        w.endObject()
    }

    var encodedCapacity: Int { query.count + (payload?.count ?? 0) + (nonce?.count ?? 0) + 48 }

    init?(tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject,
              let t = tape.member(of: root, named: "t"), tape.kind(t) == .string,
              let q = tape.member(of: root, named: "q"),
              let payloadNode = tape.member(of: root, named: "payload") else { return nil }
        let encoding = PeerPiece.encoding(of: root, tape: tape)
        self.encoding = encoding
        guard let query = PeerPiece.read(q, encoding, tape: tape, body: body) else { return nil }
        self.query = query
        all = tape.member(of: root, named: "all").flatMap { tape.bool($0) } ?? false
        event = tape.isString(t, equalTo: "BROADCAST") ? "BROADCAST" : "SEND"
        nonce = tape.member(of: root, named: "nonce").flatMap { PeerPiece.read($0, encoding, tape: tape, body: body) }
        payload = PeerPiece.read(payloadNode, encoding, tape: tape, body: body)
    }
}

extension RouteMessage: Equatable {
    static func == (a: RouteMessage, b: RouteMessage) -> Bool {
        a.event.description == b.event.description && a.encoding == b.encoding && a.all == b.all
            && PeerPiece.same(a.query, b.query) && PeerPiece.same(a.nonce, b.nonce) && PeerPiece.same(a.payload, b.payload)
    }
}
