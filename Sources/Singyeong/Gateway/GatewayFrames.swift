/// Server frames of the gateway protocol that do not depend on a message
/// (protocol.md §3–4).
struct GatewayFrames {
    let heartbeatInterval: Int

    init(heartbeatInterval: Int) { self.heartbeatInterval = heartbeatInterval }

    /// HELLO: `{"op":0,"t":null,"ts":MS,"d":{"heartbeat_interval":N}}` as a
    /// JSON text frame or the same map in MessagePack (binary frame).
    func hello(encoding: PayloadEncoding, timestamp: Int64) -> OutboundBytes {
        var w = FrameWriter(encoding: encoding, capacity: 80)
        w.beginFrame(op: 0, t: nil, ts: timestamp)
        w.beginObject(count: 1)
        w.key("heartbeat_interval"); w.int(Int64(heartbeatInterval))
        w.endObject()
        w.endObject()
        return w.webSocketFrame()
    }
}
