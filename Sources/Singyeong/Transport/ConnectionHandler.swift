/// The protocol spoken on a connection (HTTP/1.1 first; a WebSocket session
/// after an upgrade). The connection owns the socket and buffers; the handler
/// owns the protocol state and calls back into the connection to send or close.
protocol ConnectionHandler: AnyObject {
    /// New bytes have arrived. Returns how many the handler consumed; the rest
    /// is kept and presented again, with more bytes appended, next time. The
    /// handler may unmask/rewrite the bytes in place. It may replace itself
    /// (`connection.handler = ...`); the connection then hands the remaining
    /// bytes to the new handler.
    func connection(_ connection: ConnectionContext, received bytes: UnsafeMutableRawBufferPointer) -> Int

    /// Total bytes the handler needs buffered to make progress, when it knows
    /// (a large frame's size), so the connection sizes its buffer once.
    var bytesNeededHint: Int? { get }

    /// Most bytes the connection may hold for this handler, when it bounds
    /// them (a peer link before authentication): reads into the
    /// connection's own buffer stop there instead of reading ahead 16 KiB.
    var maxBufferedInput: Int? { get }

    /// The server is shutting down: finish politely (WebSocket close 1001,
    /// HTTP close after the current response).
    func connectionShouldShutDown(_ connection: ConnectionContext)

    /// The deadline the handler armed last (`ConnectionContext.armDeadline`, or the
    /// idle/handshake deadlines) passed without being re-armed.
    func connectionDeadlineExpired(_ connection: ConnectionContext)

    /// An outbound connection finished connecting (accepted ones never call
    /// it). A requirement, not just an extension method, so a handler's own
    /// implementation is what the connection calls.
    func connectionEstablished(_ connection: ConnectionContext)

    /// The connection is gone (called exactly once). Release resources here.
    func connectionClosed(_ connection: ConnectionContext)
}

extension ConnectionHandler {
    /// Default: nothing to do (server-side handlers never dial).
    func connectionEstablished(_ connection: ConnectionContext) {}

    /// Default: no bound beyond the protocol's own frame limits.
    var maxBufferedInput: Int? { nil }
}
