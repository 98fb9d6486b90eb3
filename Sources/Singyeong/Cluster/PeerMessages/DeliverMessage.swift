/// The body of a `deliver` frame: a routed message for some of the
/// receiver's clients. `{"t": event, "enc": 0|1, "nonce"?: nonce,
/// "payload": payload, "to": [handles]}`, keys in that order; `nonce` and
/// `payload` are `PeerPiece`s in encoding `enc`. No answer.
///
/// Decoding gives nil (nothing is delivered) when the body is not a map,
/// `t` is not "SEND" or "BROADCAST", `payload` is missing (or, in JSON, not
/// a string) or `to` is not an array. Non-integer handles are skipped; a
/// JSON `nonce` that is not a string counts as none. The pieces are slices
/// of the frame body, valid only while it is handled.
struct DeliverMessage: PeerMessageBody {
    /// SEND or BROADCAST.
    var event: StaticString
    var encoding: PayloadEncoding
    var nonce: UnsafeRawBufferPointer?
    var payload: UnsafeRawBufferPointer
    /// The recipients' handles on the receiver.
    var handles: [UInt64]

    init(event: StaticString, encoding: PayloadEncoding, nonce: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer,
         handles: [UInt64]) {
        self.event = event
        self.encoding = encoding
        self.nonce = nonce
        self.payload = payload
        self.handles = handles
    }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: nonce == nil ? 4 : 5)
        w.key("t"); w.string(event)
        w.key("enc"); w.int(PeerPiece.encodingCode(encoding))
        if let nonce { w.key("nonce"); PeerPiece.write(nonce, encoding, into: &w) }
        w.key("payload"); PeerPiece.write(payload, encoding, into: &w)
        w.key("to")
        w.beginArray(count: handles.count)
        for handle in handles { w.element(); w.int(Int64(bitPattern: handle)) }
        w.endArray()
        w.endObject()
    }

    var encodedCapacity: Int { payload.count + (nonce?.count ?? 0) + 32 + 9 * handles.count }

    init?(tape: DocumentTape, body: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject,
              let t = tape.member(of: root, named: "t"), tape.kind(t) == .string,
              let payloadNode = tape.member(of: root, named: "payload"),
              let to = tape.member(of: root, named: "to"), tape.kind(to) == .array
        else { return nil }
        if tape.isString(t, equalTo: "SEND") { event = "SEND" }
        else if tape.isString(t, equalTo: "BROADCAST") { event = "BROADCAST" }
        else { return nil }
        let encoding = PeerPiece.encoding(of: root, tape: tape)
        self.encoding = encoding
        guard let payload = PeerPiece.read(payloadNode, encoding, tape: tape, body: body) else { return nil }
        self.payload = payload
        nonce = tape.member(of: root, named: "nonce").flatMap { PeerPiece.read($0, encoding, tape: tape, body: body) }
        handles = []
        handles.reserveCapacity(tape.count(to))
        for element in tape.elements(of: to) {
            if let h = tape.int64(element) { handles.append(UInt64(bitPattern: h)) }
        }
    }
}

extension DeliverMessage: Equatable {
    static func == (a: DeliverMessage, b: DeliverMessage) -> Bool {
        a.event.description == b.event.description && a.encoding == b.encoding && PeerPiece.same(a.nonce, b.nonce)
            && PeerPiece.same(a.payload, b.payload) && a.handles == b.handles
    }
}
