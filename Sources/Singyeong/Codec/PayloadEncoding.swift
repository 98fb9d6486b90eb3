/// The negotiated encoding of a gateway connection's frames and payloads
/// (protocol.md §1.3, the handshake's `encoding` parameter). A Codec type
/// because the frame writers, routing and the cluster carry it, not only
/// the WebSocket handshake that chooses it.
enum PayloadEncoding: Sendable {
    case json, msgpack
}
