/// The application protocol spoken over one WebSocket, as
/// `WebSocketConnectionHandler` drives it: the handler owns framing, pings,
/// the close handshake and the deadlines; everything the messages mean is
/// here. The gateway's `GatewaySession` implements it. WebSocket owns the
/// protocol so that it never names the gateway above it (issue 11).
///
/// `received` runs once per message: the handler keeps the session as one
/// class-bound existential (a reference and a witness table, stored once per
/// connection), so each call is a single indirect call with no allocation,
/// no boxing and no closure context.
protocol WebSocketMessageHandler: AnyObject {
    /// The 101 is queued and the pre-identify deadline armed: greet the
    /// peer (the gateway's HELLO).
    func opened()

    /// One complete data message; `payload` is valid only during the call
    /// (text messages are valid UTF-8).
    func received(opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer)

    /// IDENTIFY_TIMEOUT passed without `identifyAccepted()`: end the
    /// session the application's way (it closes through `closeAfterDelay`).
    func identifyTimedOut()

    /// The server is shutting down. Returns true after saying goodbye the
    /// application's way (the socket then closes through
    /// `closeAfterDelay`), false when it has nothing to say: the handler
    /// then closes with 1001 at once.
    func serverShuttingDown() -> Bool

    /// The connection ended (called once, possibly after the session ended
    /// itself; cleaning up twice must be harmless).
    func cleanUp()
}
