/// The body of a `proxy` frame: `POST /api/v1/proxy` for a client of the
/// receiver. `[u32 n][n bytes of header][request body]`, the header being
/// `{"h": handle, "m": method, "r": route, "hd": [[name, value]...], "x":
/// caller address, "b": has body}` (keys in that order); the request body
/// travels raw after it. Answered by `proxyResult`.
///
/// Decoding gives nil (the receiver answers 502) unless the header is a map
/// with an integer `h`, string `m`, `r` and `x`, and an `hd` (read leniently,
/// see `PeerHeaders`). A missing or non-boolean `b` means no body, whatever
/// follows the header. The body is copied out of the frame (the upstream
/// request outlives it), as it always was.
struct ProxyMessage {
    /// The client's handle on the receiver.
    var handle: UInt64
    var method: String
    var route: String
    var headers: [(String, String)]
    /// The caller's address, for the upstream's forwarding headers.
    var callerIP: String
    var body: [UInt8]?

    init(handle: UInt64, method: String, route: String, headers: [(String, String)], callerIP: String, body: [UInt8]?) {
        self.handle = handle
        self.method = method
        self.route = route
        self.headers = headers
        self.callerIP = callerIP
        self.body = body
    }

    func encodeHeader(into w: inout FrameWriter) {
        w.beginObject(count: 6)
        w.key("h"); w.int(Int64(bitPattern: handle))
        w.key("m"); w.string(method)
        w.key("r"); w.string(route)
        w.key("hd"); PeerHeaders.write(headers, into: &w)
        w.key("x"); w.string(callerIP)
        w.key("b"); w.bool(body != nil)
        w.endObject()
    }

    /// The whole frame body: length-prefixed header, then the request body.
    var bytes: [UInt8] {
        var w = FrameWriter(encoding: .msgpack, capacity: 128 + route.utf8.count)
        encodeHeader(into: &w)
        return PeerFrameCodec.rawTailBody(header: w.bytes, tail: body)
    }

    /// `tape` holds the decoded header, `tail` is what followed it.
    init?(tape: DocumentTape, tail: UnsafeRawBufferPointer) {
        guard let root = tape.rootObject,
              let h = tape.member(of: root, named: "h").flatMap({ tape.int64($0) }),
              let m = tape.member(of: root, named: "m"), tape.kind(m) == .string,
              let r = tape.member(of: root, named: "r"), tape.kind(r) == .string,
              let x = tape.member(of: root, named: "x"), tape.kind(x) == .string,
              let hd = tape.member(of: root, named: "hd")
        else { return nil }
        handle = UInt64(bitPattern: h)
        method = tape.string(m)
        route = tape.string(r)
        headers = PeerHeaders.read(hd, tape: tape)
        callerIP = tape.string(x)
        let hasBody = tape.member(of: root, named: "b").flatMap { tape.bool($0) } ?? false
        body = hasBody ? Array(tail) : nil
    }
}

extension ProxyMessage: Equatable {
    static func == (a: ProxyMessage, b: ProxyMessage) -> Bool {
        a.handle == b.handle && a.method == b.method && a.route == b.route && PeerHeaders.same(a.headers, b.headers)
            && a.callerIP == b.callerIP && a.body == b.body
    }
}
