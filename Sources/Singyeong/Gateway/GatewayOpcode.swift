/// Gateway opcodes (protocol.md §3). The names are those the original's
/// error texts use (`invalid client op :hello`).
enum GatewayOpcode: Int64 {
    case hello = 0, identify = 1, ready = 2, invalid = 3, dispatch = 4
    case heartbeat = 5, heartbeatAck = 6, goodbye = 7, error = 8

    /// Text of the fatal error for a client sending this op after identify.
    var invalidClientOpText: StaticString {
        switch self {
        case .hello: return "invalid client op :hello"
        case .ready: return "invalid client op :ready"
        case .invalid: return "invalid client op :invalid"
        case .heartbeatAck: return "invalid client op :heartbeat_ack"
        case .goodbye: return "invalid client op :goodbye"
        case .error: return "invalid client op :error"
        case .identify, .dispatch, .heartbeat: return "invalid client op nil"
        }
    }
}
