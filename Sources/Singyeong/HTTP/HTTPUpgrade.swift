/// Takes a connection out of HTTP on an upgrade request (the WebSocket
/// endpoint implements it). HTTP owns this protocol so that it never names
/// the protocol it hands the connection to (issue 11).
protocol HTTPUpgrade: AnyObject {
    /// Either queues its own answer (101), puts a new handler on
    /// `connection` and returns nil, or returns the refusal to answer: HTTP
    /// then sends it and closes the connection.
    func takeOver(_ connection: ConnectionContext, request head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> HTTPResponse?
}
