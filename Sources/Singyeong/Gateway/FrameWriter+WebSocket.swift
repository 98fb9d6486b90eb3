/// Framing a finished gateway frame for a client connection. Kept out of
/// Codec/FrameWriter.swift because it needs the WebSocket layer, which sits
/// above Codec; only the gateway sends frames to WebSocket clients.
extension FrameWriter {
    /// The finished frame as a WebSocket message.
    func webSocketFrame() -> OutboundBytes {
        bytes.withUnsafeBytes { WebSocketFrames.make(opcode: encoding == .json ? .text : .binary, payload: $0) }
    }
}
