/// The body of a `query` frame (cluster.md §4): `{"enc": 0|1, "q": query,
/// "list": descriptors, "opt": withFallback}`, keys in that order; `q` is
/// a `PeerPiece` in encoding `enc`.
///
/// Decoding gives nil when the body is not a map, has no `q`, or has a JSON
/// `q` that is not a string (the receiver then does not answer). Missing or
/// non-boolean `list`/`opt` are false. `query` is a slice of the frame
/// body, valid only while the frame is handled.
struct QueryMessage: PeerMessageBody {
    var encoding: PayloadEncoding
    /// The query as the client sent it (JSON text, or MessagePack).
    var query: UnsafeRawBufferPointer
    /// Whether to answer with client descriptors (listings).
    var descriptors: Bool
    /// Whether to add base-filter clients when nothing matches (`optional`).
    var withFallback: Bool

    init(encoding: PayloadEncoding, query: UnsafeRawBufferPointer, descriptors: Bool, withFallback: Bool) {
        self.encoding = encoding
        self.query = query
        self.descriptors = descriptors
        self.withFallback = withFallback
    }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 4)
        w.key("enc"); w.int(PeerPiece.encodingCode(encoding))
        w.key("q"); PeerPiece.write(query, encoding, into: &w)
        w.key("list"); w.bool(descriptors)
        w.key("opt"); w.bool(withFallback)
        w.endObject()
    }

    var encodedCapacity: Int { query.count + 32 }

    init?(tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject, let q = tape.member(of: root, named: "q") else { return nil }
        let encoding = PeerPiece.encoding(of: root, tape: tape)
        self.encoding = encoding
        guard let query = PeerPiece.read(q, encoding, tape: tape, body: body) else { return nil }
        self.query = query
        descriptors = tape.member(of: root, named: "list").flatMap { tape.bool($0) } ?? false
        withFallback = tape.member(of: root, named: "opt").flatMap { tape.bool($0) } ?? false
    }
}

extension QueryMessage: Equatable {
    static func == (a: QueryMessage, b: QueryMessage) -> Bool {
        a.encoding == b.encoding && PeerPiece.same(a.query, b.query) && a.descriptors == b.descriptors
            && a.withFallback == b.withFallback
    }
}
