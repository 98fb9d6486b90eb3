/// Frames on a peer link (cluster.md §3): `[u32 length][u8 type][u64 request
/// id][body]`, big-endian, `length` counting type, id and body. Bodies are
/// MessagePack maps (decoded with the gateway's tape decoder), so payloads
/// in either client encoding travel without re-encoding.
enum PeerFrameType: UInt8 {
    /// `{"v": version, "node": id, "nonce": hex}` — first frame each way
    /// (the dialer's first; PeerHandshake has the order).
    case hello = 1
    /// `{"mac": hex}` — proof of knowing COOKIE, bound to the peer's nonce.
    case auth = 2
    case ping = 3
    case pong = 4
    /// `{"code": kind, "reason": text}` — the sender gives up on the
    /// handshake and closes (`code` "proof": the receiver's proof was wrong).
    case refuse = 5
    /// A query to run on the receiver's clients; answered by `queryResult`
    /// with the same request id.
    case query = 10
    case queryResult = 11
    /// A routed message for some of the receiver's clients (no answer).
    case deliver = 12
    /// CLIENT_CONNECTED / CLIENT_DISCONNECTED for the receiver's subscribers.
    case event = 13
    /// Several `query` (or `queryResult`) frames queued in one loop turn,
    /// sent as one: the body is a sequence of `[u64 request id][u32
    /// length][body]` entries (cluster work done for many messages at once).
    case queryBatch = 14
    case queryResultBatch = 15
    /// The applications the sender has clients of: `{"full": true, "add":
    /// [...]}` right after the link comes up, then `{"add": [...]}` /
    /// `{"remove": [...]}` as applications gain their first or lose their
    /// last client. Lets the receiver skip the sender for queries of other
    /// applications.
    case applications = 16
    /// Acknowledges an `applications` frame that asked for it (`"ack": true`),
    /// same request id: the sender then knows the receiver will ask it.
    case applicationsAck = 17
    /// A SEND or BROADCAST whose candidates can only be on the receiver
    /// (none here, no other peer may have its application): the query and
    /// the message together; the receiver picks and delivers, then answers
    /// `routeResult` `{"n": delivered}` so the sender can get `no_route`.
    case route = 18
    case routeResult = 19
    /// `POST /api/v1/proxy` for a client of the receiver. Body: `[u32 n][n
    /// bytes of MessagePack header][request body bytes]` — the header is
    /// `{"h": handle, "m": method, "r": route, "hd": [[name, value]...],
    /// "x": caller address, "b": has body}`; the body travels raw.
    case proxy = 20
    /// The proxied response: `[u32 n][header {"s": status, "hd": [[name,
    /// value]...]}][response body bytes]`.
    case proxyResult = 21
    /// Discovery (rest.md §6): `{"t": [tags]}`, answered by `tagsResult`
    /// `{"a": [application ids]}`.
    case tags = 22
    case tagsResult = 23
    /// The caller of a forwarded proxy request went away: the receiver
    /// aborts the upstream request with that request id (no answer).
    case proxyCancel = 24
    /// The sender is shutting down (lame duck): the receiver stops choosing
    /// its clients at once and answers `leavingAck` (same request id). Sent
    /// before the sender asks its own clients to go, so everything routed
    /// to them before the ack has reached them; the link stays open until
    /// the sender's own requests are answered.
    case leaving = 25
    case leavingAck = 26
    /// A queue operation for the node that owns the queue (issue 14): a
    /// body the queue service writes and reads (the cluster only carries
    /// it), answered by `queueReply` with the same request id.
    case queueRequest = 27
    case queueReply = 28
    /// A queue message without an answer (a delivery to a consumer of the
    /// receiver, a consumer gone).
    case queueMessage = 29

    /// Frames whose body is a length-prefixed MessagePack header followed by raw bytes.
    var hasRawTail: Bool { self == .proxy || self == .proxyResult }

    /// Frames whose body (or, for `hasRawTail`, header) is one MessagePack
    /// value. The others carry nothing (`pong`, `applicationsAck`,
    /// `proxyCancel`: the request id says it all) or a sequence of entries
    /// each decoded on its own (the batches).
    var hasMessagePackBody: Bool {
        switch self {
        case .pong, .applicationsAck, .proxyCancel, .queryBatch, .queryResultBatch, .leaving, .leavingAck: return false
        default: return true
        }
    }
}

/// One decoded frame header; the body is `buffer[body]`.
struct PeerFrameHeader: Equatable {
    var type: UInt8
    var requestID: UInt64
    var body: Range<Int>
    /// Bytes of the whole frame (what to consume).
    var frameLength: Int
}

/// A frame that cannot be accepted: the link is closed with this reason.
struct PeerFrameError: Error, Equatable {
    var reason: String
}

/// Splits peer-link bytes into frames, in place.
enum PeerFrameCodec {
    static let headerLength = 13
    /// The version both sides must speak (sent in HELLO). 3: the dialer
    /// proves first, proofs name their role, REFUSE. LEAVING (added later)
    /// did not change it: an earlier build closes the link on a frame type
    /// it does not know, which is what a leaving node's link did anyway, and
    /// the leaving node waits for its acknowledgement only until
    /// CLUSTER_QUERY_TIMEOUT_MS — so a rolling upgrade keeps linking.
    static let protocolVersion: Int64 = 3
    /// Largest whole frame (header included) accepted before the peer has
    /// proved it knows COOKIE: handshake frames are a few hundred bytes, so
    /// a stranger can make a node hold at most this much for its connection.
    static let handshakeMaxFrame = 4096
    static var handshakeMaxBody: Int { handshakeMaxFrame - headerLength }

    /// The first complete frame at the start of `buffer`, nil if incomplete.
    /// `maxBody` bounds what a peer can make us buffer.
    static func next(_ buffer: UnsafeRawBufferPointer, maxBody: Int) throws(PeerFrameError) -> PeerFrameHeader? {
        guard buffer.count >= 4 else { return nil }
        let length = Int(UInt32(buffer[0]) << 24 | UInt32(buffer[1]) << 16 | UInt32(buffer[2]) << 8 | UInt32(buffer[3]))
        guard length >= 9 else { throw PeerFrameError(reason: "frame length \(length) shorter than its header") }
        guard length - 9 <= maxBody else { throw PeerFrameError(reason: "frame body of \(length - 9) bytes over the \(maxBody)-byte limit") }
        guard buffer.count >= 4 + length else { return nil }
        var id: UInt64 = 0
        for i in 5..<13 { id = id << 8 | UInt64(buffer[i]) }
        return PeerFrameHeader(type: buffer[4], requestID: id, body: 13..<(4 + length), frameLength: 4 + length)
    }

    /// Total bytes needed for the frame that starts `buffer`, when known.
    static func bytesNeeded(_ buffer: UnsafeRawBufferPointer) -> Int? {
        guard buffer.count >= 4 else { return nil }
        return 4 + Int(UInt32(buffer[0]) << 24 | UInt32(buffer[1]) << 16 | UInt32(buffer[2]) << 8 | UInt32(buffer[3]))
    }

    /// The entries of a batch body, in order; nil if malformed.
    static func batchEntries(_ body: UnsafeRawBufferPointer) -> [(requestID: UInt64, body: Range<Int>)]? {
        var entries: [(UInt64, Range<Int>)] = []
        var i = 0
        while i < body.count {
            guard body.count - i >= 12 else { return nil }
            var id: UInt64 = 0
            for k in 0..<8 { id = id << 8 | UInt64(body[i + k]) }
            var length = 0
            for k in 8..<12 { length = length << 8 | Int(body[i + k]) }
            i += 12
            guard body.count - i >= length else { return nil }
            entries.append((id, i..<(i + length)))
            i += length
        }
        return entries
    }

    /// Decodes a frame's MessagePack body (a `hasRawTail` frame's header)
    /// into `tape` and returns the raw tail (empty for other frames). For a
    /// type that carries a MessagePack value, an empty or undecodable body is
    /// a protocol error: handlers then always find a root node, never read
    /// node 0 of an empty tape (out of bounds, or a previous frame's stale
    /// node left in the reused storage). Bodyless types leave `tape` empty
    /// and ignore any body. Batch entries go through `decodeEntry`.
    static func decodeBody(_ type: PeerFrameType, _ body: UnsafeRawBufferPointer,
                           into tape: inout DocumentTape) throws(PeerFrameError) -> UnsafeRawBufferPointer {
        tape.removeAll()
        guard type.hasMessagePackBody else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        var value = body
        var tail = UnsafeRawBufferPointer(start: nil, count: 0)
        if type.hasRawTail {
            guard let parts = splitRawTail(body) else { throw PeerFrameError(reason: "malformed \(type) frame") }
            value = UnsafeRawBufferPointer(rebasing: body[parts.header])
            tail = UnsafeRawBufferPointer(rebasing: body[parts.tail])
        }
        try decodeValue(value, what: "\(type) frame", into: &tape)
        return tail
    }

    /// Decodes one batch entry's body (a `query` or `queryResult` body).
    static func decodeEntry(_ type: PeerFrameType, _ body: UnsafeRawBufferPointer,
                            into tape: inout DocumentTape) throws(PeerFrameError) {
        try decodeValue(body, what: "\(type) entry", into: &tape)
    }

    private static func decodeValue(_ bytes: UnsafeRawBufferPointer, what: String,
                                    into tape: inout DocumentTape) throws(PeerFrameError) {
        guard !bytes.isEmpty else { throw PeerFrameError(reason: "empty \(what) body") }
        do {
            try MessagePackTapeDecoder.decode(bytes, into: &tape)
        } catch {
            throw PeerFrameError(reason: "undecodable \(what): \(error.detail)")
        }
        // A successful decode leaves at least the root node.
        precondition(!tape.isEmpty)
    }

    /// Appends one batch entry.
    static func appendBatchEntry(requestID: UInt64, body: [UInt8], to out: inout [UInt8]) {
        withUnsafeBytes(of: requestID.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: body)
    }

    /// The header and raw tail of a `hasRawTail` frame body; nil if malformed.
    static func splitRawTail(_ body: UnsafeRawBufferPointer) -> (header: Range<Int>, tail: Range<Int>)? {
        guard body.count >= 4 else { return nil }
        let n = Int(UInt32(body[0]) << 24 | UInt32(body[1]) << 16 | UInt32(body[2]) << 8 | UInt32(body[3]))
        guard n <= body.count - 4 else { return nil }
        return (4..<(4 + n), (4 + n)..<body.count)
    }

    /// A `hasRawTail` body: `[u32 header length][header][tail]`.
    static func rawTailBody(header: [UInt8], tail: [UInt8]?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4 + header.count + (tail?.count ?? 0))
        withUnsafeBytes(of: UInt32(header.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        if let tail { out.append(contentsOf: tail) }
        return out
    }

    /// One frame, ready to queue.
    static func make(_ type: PeerFrameType, requestID: UInt64 = 0, body: [UInt8]) -> OutboundBytes {
        OutboundBytes.make(count: headerLength + body.count) { p in
            let length = UInt32(9 + body.count)
            p.storeBytes(of: length.bigEndian, toByteOffset: 0, as: UInt32.self)
            p.storeBytes(of: type.rawValue, toByteOffset: 4, as: UInt8.self)
            p.storeBytes(of: requestID.bigEndian, toByteOffset: 5, as: UInt64.self)
            body.withUnsafeBytes { if let base = $0.baseAddress { (p + headerLength).copyMemory(from: base, byteCount: body.count) } }
        }
    }
}
