/// What an HTTP connection serves: `HTTPConnectionHandler` parses requests
/// and keeps them in order, the application decides what each one means.
/// HTTP owns this protocol so that it never names the layers above it
/// (issue 11); the REST routes implement it.
protocol HTTPApplication: AnyObject {
    /// The way out of HTTP for this request (the gateway's WebSocket at its
    /// path), or nil for an ordinary request, which goes to `respond`.
    func upgrade(for head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> HTTPUpgrade?

    /// Answers one complete request: the response now, or nil when it will
    /// come through `later` (work that waits for peers or an upstream).
    /// `onCancel` receives what to do if the caller goes away before a later
    /// response. `buffer` starts at the request's head; `body` is within it.
    func respond(to head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                 peer: PeerAddress, later: @escaping (HTTPResponse) -> Void,
                 onCancel: (@escaping () -> Void) -> Void) -> HTTPResponse?
}
