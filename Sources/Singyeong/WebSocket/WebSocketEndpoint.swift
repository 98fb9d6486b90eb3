import Logging

/// What every WebSocket connection of a node shares: the limits, the two
/// deadline queues, the logger, and how a session is made. As the
/// `HTTPUpgrade` of the gateway path it completes the opening handshake and
/// puts a `WebSocketConnectionHandler` on the connection.
///
/// The layer above supplies the session through `makeSession` (the node
/// builds a `GatewaySession`), so WebSocket never names the gateway or the
/// node. The node owns the endpoint for its whole life; each connection
/// handler holds it `unowned`.
final class WebSocketEndpoint: HTTPUpgrade {
    /// The settings a WebSocket connection reads, as plain values.
    struct Limits {
        /// IDENTIFY_MAX_SIZE: the largest message before IDENTIFY is accepted.
        var identifyMaxSize: Int
        /// MAX_FRAME_SIZE: the largest message afterwards.
        var maxFrameSize: Int
        /// IDENTIFY_TIMEOUT, milliseconds from HELLO.
        var identifyTimeout: Int
        /// IDLE_TIMEOUT, milliseconds.
        var idleTimeout: Int
    }

    /// Makes the session for a new connection: the handler (which the
    /// session calls back), the connection, the negotiated encoding.
    typealias SessionFactory = (WebSocketConnectionHandler, ConnectionContext, PayloadEncoding) -> WebSocketMessageHandler

    let limits: Limits
    let logger: Logger
    /// The 100 ms pause between an op 7/8 frame and the close (protocol.md §5.4).
    let closeDelayDeadlines: DeadlineQueue
    /// IDENTIFY_TIMEOUT after HELLO (issue 10: no deadline let a peer that
    /// never identified hold its connection forever).
    let identifyDeadlines: DeadlineQueue
    let makeSession: SessionFactory

    init(loop: EventLoop, logger: Logger, limits: Limits, makeSession: @escaping SessionFactory) {
        self.limits = limits
        self.logger = logger
        self.makeSession = makeSession
        closeDelayDeadlines = DeadlineQueue(loop: loop, duration: 0.1)
        identifyDeadlines = DeadlineQueue(loop: loop, duration: Double(limits.identifyTimeout) / 1000)
    }

    /// Checks the upgrade request; on success queues the 101, hands the
    /// connection to a new `WebSocketConnectionHandler` and returns nil.
    /// Otherwise returns the refusal to answer (the caller closes after it).
    func takeOver(_ connection: ConnectionContext, request head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> HTTPResponse? {
        switch WebSocketHandshake.evaluate(head, in: buffer) {
        case .reject(let response):
            logger.debug("WebSocket upgrade refused", metadata: ["peer": "\(connection.peer.description)", "status": "\(response.status)"])
            return response
        case .accept(let key, let encoding):
            let accept = WebSocketHandshake.acceptValue(key: UnsafeRawBufferPointer(rebasing: buffer[key]))
            connection.send(WebSocketHandshake.switchingProtocols(acceptValue: accept))
            let handler = WebSocketConnectionHandler(endpoint: self, connection: connection, encoding: encoding)
            connection.handler = handler
            handler.start()
            return nil
        }
    }
}
