/// The body of a `proxyResult` frame, the answer to a `proxy`: `[u32 n][n
/// bytes of header][response body]`, the header being `{"s": status, "hd":
/// [[name, value]...]}` (keys in that order); the response body travels raw.
///
/// Decoding gives nil (the asking node answers 502) unless the header is a
/// map with an integer `s` in 200...599 and an `hd` (read leniently, see
/// `PeerHeaders`). The body is everything after the header, copied out of
/// the frame (it outlives it), as it always was.
struct ProxyResultMessage {
    var status: Int64
    var headers: [(String, String)]
    var body: [UInt8]

    init(status: Int64, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    func encodeHeader(into w: inout FrameWriter) {
        w.beginObject(count: 2)
        w.key("s"); w.int(status)
        w.key("hd"); PeerHeaders.write(headers, into: &w)
        w.endObject()
    }

    /// The whole frame body: length-prefixed header, then the response body.
    var bytes: [UInt8] {
        var w = FrameWriter(encoding: .msgpack)
        encodeHeader(into: &w)
        return PeerFrameCodec.rawTailBody(header: w.bytes, tail: body)
    }

    /// `tape` holds the decoded header, `tail` is what followed it.
    init?(tape: DocumentTape, tail: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject,
              let s = tape.member(of: root, named: "s").flatMap({ tape.int64($0) }), (200...599).contains(s),
              let hd = tape.member(of: root, named: "hd") else { return nil }
        status = s
        headers = PeerHeaders.read(hd, tape: tape)
        body = Array(tail)
    }
}

extension ProxyResultMessage: Equatable {
    static func == (a: ProxyResultMessage, b: ProxyResultMessage) -> Bool {
        a.status == b.status && PeerHeaders.same(a.headers, b.headers) && a.body == b.body
    }
}
