/// The bodies of the queue frames between nodes (issue 14 point 3):
/// MessagePack maps the cluster carries without reading. Client pieces
/// (target, nonce, payload) travel as `PeerPiece`s in the producer's
/// encoding, so a payload is never re-encoded on its way to the owner.
///
/// Requests (`queueRequest`, answered by a `Reply`), key `o`:
/// - `"q"` QUEUE: `q` name, `enc`, `target`, `payload`, `nonce`?
/// - `"r"` QUEUE_REQUEST of a consumer of the sender: `q`, `h` its handle
///   there, `s` the request's sequence number (a repeat of the same number
///   keeps its place and is not served twice), `a`/`c` its ids, `enc` its
///   encoding, `m` its metadata as `[[key, type, value]...]` (reserved keys
///   included: the owner evaluates targets against it). `m` is left out of
///   a repeat to an owner that said it keeps the metadata (`km` below)
///   while it has not changed: waiting consumers are sent again every GC
///   interval, and their metadata can be large.
/// - `"c"` QUEUE_REQUEST_CANCEL: `q`, `h`
/// - `"a"` QUEUE_ACK: `q`, `id`
///
/// Replies: `err` (an error for the client), `holder` (ask that node),
/// `km` true (a request's metadata is kept: repeats may leave `m` out),
/// `nm` true (a request without `m` came for a consumer this node does not
/// have: send it again with `m`). A node that knows neither flag sends
/// neither and ignores them, so its peers always send `m` to it.
///
/// Messages (`queueMessage`, no answer): `"d"` a delivery to consumer `h`
/// of the receiver (`q`, `h`, `s`, `id`, `enc`, `payload`, `nonce`?) and
/// `"g"` consumer `h` of the sender is gone.
///
/// Decoding is strict and gives nil for anything else: a queue name outside
/// 1–255 bytes, a missing or mistyped key, a metadata entry that is not a
/// `[string, known type, value]` triple. The pieces are slices of the frame
/// body, valid only while it is handled.
enum QueuePeerMessage {
    /// A waiting consumer of the sending node, as the owner needs it to
    /// evaluate targets and send deliveries back.
    struct Consumer {
        let handle: UInt64
        let sequence: UInt64
        let application: String
        let client: String
        let encoding: PayloadEncoding
        /// Nil: unchanged since the request the owner last kept.
        let metadata: ClientMetadata?
    }

    /// A client's queue operation, forwarded to the queue's node.
    enum Operation {
        case enqueue(queue: String, encoding: PayloadEncoding, target: UnsafeRawBufferPointer,
                     nonce: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer)
        case request(queue: String, consumer: Consumer)
        case cancel(queue: String, handle: UInt64)
        case acknowledge(queue: String, id: String)
    }

    /// A message without an answer.
    enum Message {
        case deliver(queue: String, handle: UInt64, sequence: UInt64, id: String, encoding: PayloadEncoding,
                     nonce: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer)
        case gone(handle: UInt64)
    }

    /// The answer to an operation: nothing (done), an error for the client,
    /// or the node that holds the queue (the sender should ask it).
    struct Reply: Equatable {
        var error: String?
        var holder: String?
        /// The request's metadata is kept; repeats may leave it out.
        var keepsMetadata = false
        /// The request left its metadata out, and this node has none.
        var needsMetadata = false
    }

    /// Most metadata entries a request may carry.
    static let maxMetadataEntries = 100_000

    // MARK: Encoding

    static func encode(_ operation: Operation) -> [UInt8] {
        var w = FrameWriter(encoding: .msgpack)
        switch operation {
        case let .enqueue(queue, encoding, target, nonce, payload):
            w.beginObject(count: nonce == nil ? 5 : 6)
            w.key("o"); w.string("q")
            w.key("q"); w.string(queue)
            w.key("enc"); w.int(PeerPiece.encodingCode(encoding))
            w.key("target"); PeerPiece.write(target, encoding, into: &w)
            w.key("payload"); PeerPiece.write(payload, encoding, into: &w)
            if let nonce { w.key("nonce"); PeerPiece.write(nonce, encoding, into: &w) }
        case let .request(queue, c):
            w.beginObject(count: c.metadata == nil ? 7 : 8)
            w.key("o"); w.string("r")
            w.key("q"); w.string(queue)
            w.key("h"); w.int(Int64(bitPattern: c.handle))
            w.key("s"); w.int(Int64(bitPattern: c.sequence))
            w.key("a"); w.string(c.application)
            w.key("c"); w.string(c.client)
            w.key("enc"); w.int(PeerPiece.encodingCode(c.encoding))
            if let metadata = c.metadata {
                w.key("m")
                w.beginArray(count: metadata.entries.count)
                for e in metadata.entries {
                    w.element()
                    w.beginArray(count: 3)
                    w.element(); w.string(e.key)
                    w.element(); w.string(e.type.rawValue)
                    w.element(); w.value(e.value)
                    w.endArray()
                }
                w.endArray()
            }
        case let .cancel(queue, handle):
            w.beginObject(count: 3)
            w.key("o"); w.string("c")
            w.key("q"); w.string(queue)
            w.key("h"); w.int(Int64(bitPattern: handle))
        case let .acknowledge(queue, id):
            w.beginObject(count: 3)
            w.key("o"); w.string("a")
            w.key("q"); w.string(queue)
            w.key("id"); w.string(id)
        }
        w.endObject()
        return w.bytes
    }

    static func encode(_ message: Message) -> [UInt8] {
        var w = FrameWriter(encoding: .msgpack)
        switch message {
        case let .deliver(queue, handle, sequence, id, encoding, nonce, payload):
            w.beginObject(count: nonce == nil ? 7 : 8)
            w.key("o"); w.string("d")
            w.key("q"); w.string(queue)
            w.key("h"); w.int(Int64(bitPattern: handle))
            w.key("s"); w.int(Int64(bitPattern: sequence))
            w.key("id"); w.string(id)
            w.key("enc"); w.int(PeerPiece.encodingCode(encoding))
            w.key("payload"); PeerPiece.write(payload, encoding, into: &w)
            if let nonce { w.key("nonce"); PeerPiece.write(nonce, encoding, into: &w) }
        case let .gone(handle):
            w.beginObject(count: 2)
            w.key("o"); w.string("g")
            w.key("h"); w.int(Int64(bitPattern: handle))
        }
        w.endObject()
        return w.bytes
    }

    static func encode(_ reply: Reply) -> [UInt8] {
        var w = FrameWriter(encoding: .msgpack)
        w.beginObject(count: (reply.error == nil ? 0 : 1) + (reply.holder == nil ? 0 : 1)
                        + (reply.keepsMetadata ? 1 : 0) + (reply.needsMetadata ? 1 : 0))
        if let error = reply.error { w.key("err"); w.string(error) }
        if let holder = reply.holder { w.key("holder"); w.string(holder) }
        if reply.keepsMetadata { w.key("km"); w.bool(true) }
        if reply.needsMetadata { w.key("nm"); w.bool(true) }
        w.endObject()
        return w.bytes
    }

    // MARK: Decoding

    static func operation(tape: DocumentTape, body: UnsafeRawBufferPointer) -> Operation? {
        guard let root = tape.rootObject, let o = string(root, "o", tape), let queue = queueName(root, tape) else { return nil }
        switch o {
        case "q":
            let encoding = PeerPiece.encoding(of: root, tape: tape)
            guard let t = tape.member(of: root, named: "target"), let p = tape.member(of: root, named: "payload"),
                  let target = PeerPiece.read(t, encoding, tape: tape, body: body), !target.isEmpty,
                  let payload = PeerPiece.read(p, encoding, tape: tape, body: body), !payload.isEmpty
            else { return nil }
            guard let nonce = nonce(root, encoding, tape, body) else { return nil }
            return .enqueue(queue: queue, encoding: encoding, target: target, nonce: nonce, payload: payload)
        case "r":
            guard let handle = integer(root, "h", tape), let sequence = integer(root, "s", tape),
                  let application = string(root, "a", tape), let client = string(root, "c", tape)
            else { return nil }
            let encoding = PeerPiece.encoding(of: root, tape: tape)
            guard let m = tape.member(of: root, named: "m") else {
                let consumer = Consumer(handle: handle, sequence: sequence, application: application, client: client,
                                        encoding: encoding, metadata: nil)
                return .request(queue: queue, consumer: consumer)
            }
            guard tape.kind(m) == .array, tape.count(m) <= maxMetadataEntries else { return nil }
            var entries: [(key: String, type: MetadataType, value: Value)] = []
            entries.reserveCapacity(tape.count(m))
            for entry in tape.elements(of: m) {
                guard tape.kind(entry) == .array, tape.count(entry) == 3 else { return nil }
                let parts = Array(tape.elements(of: entry))
                guard tape.kind(parts[0]) == .string, tape.kind(parts[1]) == .string,
                      let type = MetadataType(rawValue: tape.string(parts[1]))
                else { return nil }
                entries.append((tape.string(parts[0]), type, tape.value(parts[2])))
            }
            let consumer = Consumer(handle: handle, sequence: sequence, application: application, client: client,
                                    encoding: encoding, metadata: ClientMetadata(entries: entries))
            return .request(queue: queue, consumer: consumer)
        case "c":
            guard let handle = integer(root, "h", tape) else { return nil }
            return .cancel(queue: queue, handle: handle)
        case "a":
            guard let id = string(root, "id", tape) else { return nil }
            return .acknowledge(queue: queue, id: id)
        default:
            return nil
        }
    }

    static func message(tape: DocumentTape, body: UnsafeRawBufferPointer) -> Message? {
        guard let root = tape.rootObject, let o = string(root, "o", tape), let handle = integer(root, "h", tape) else { return nil }
        switch o {
        case "d":
            let encoding = PeerPiece.encoding(of: root, tape: tape)
            guard let queue = queueName(root, tape), let sequence = integer(root, "s", tape), let id = string(root, "id", tape),
                  let p = tape.member(of: root, named: "payload"),
                  let payload = PeerPiece.read(p, encoding, tape: tape, body: body), !payload.isEmpty
            else { return nil }
            guard let nonce = nonce(root, encoding, tape, body) else { return nil }
            return .deliver(queue: queue, handle: handle, sequence: sequence, id: id, encoding: encoding, nonce: nonce,
                            payload: payload)
        case "g":
            return .gone(handle: handle)
        default:
            return nil
        }
    }

    /// A reply; a body that is not a map reads as an error.
    static func reply(tape: DocumentTape) -> Reply {
        guard let root = tape.rootObject else { return Reply(error: "malformed reply from the queue's node") }
        func flag(_ name: StaticString) -> Bool {
            tape.member(of: root, named: name).flatMap { tape.bool($0) } ?? false
        }
        return Reply(error: string(root, "err", tape), holder: string(root, "holder", tape),
                     keepsMetadata: flag("km"), needsMetadata: flag("nm"))
    }

    /// The optional `nonce` piece: `.some(nil)` when absent, nil when present
    /// but not a piece.
    private static func nonce(_ object: Int, _ encoding: PayloadEncoding, _ tape: DocumentTape,
                              _ body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer?? {
        guard let n = tape.member(of: object, named: "nonce") else { return .some(nil) }
        return PeerPiece.read(n, encoding, tape: tape, body: body).map { .some($0) }
    }

    private static func string(_ object: Int, _ name: StaticString, _ tape: DocumentTape) -> String? {
        guard let node = tape.member(of: object, named: name), tape.kind(node) == .string else { return nil }
        return tape.string(node)
    }

    private static func integer(_ object: Int, _ name: StaticString, _ tape: DocumentTape) -> UInt64? {
        guard let node = tape.member(of: object, named: name), let v = tape.int64(node) else { return nil }
        return UInt64(bitPattern: v)
    }

    private static func queueName(_ object: Int, _ tape: DocumentTape) -> String? {
        guard let name = string(object, "q", tape), (1...QueueName.maxLength).contains(name.utf8.count) else { return nil }
        return name
    }
}
