/// What a `ConnectionHandler` (and the sessions above it) may do with its
/// connection: send, close, run its one deadline, pause and resume input,
/// learn who the peer is. `Connection` is the real one, on a socket; unit
/// tests put a recording fake in its place, so the gateway session, HTTP
/// pipelining and the peer handshake can be driven byte by byte without
/// sockets, processes or sleeps (issue 11; SwiftNIO's EmbeddedChannel idea).
///
/// Only the members the handlers use are here. It is class-bound: handlers
/// hold it `unowned` or `weak` as one existential (a reference and a witness
/// table), so a per-message `send` is one indirect call and allocates nothing.
protocol ConnectionContext: AnyObject {
    /// The remote address (logs, the auth failure budget, a client's `ip`).
    var peer: PeerAddress { get }
    /// Open for input and output (not draining, lingering or closed).
    var isOpen: Bool { get }
    /// The protocol on this connection; a handler replaces itself on an
    /// upgrade and the connection hands the remaining bytes to the new one.
    var handler: ConnectionHandler { get set }
    /// Why the connection ended, once it did (log lines).
    var endReason: String? { get }

    /// Queues bytes for the end-of-turn flush.
    func send(_ bytes: OutboundBytes)
    /// Stops reading, writes what is queued, then closes (politely).
    func closeAfterFlush(reason: String)
    /// Closes at once, dropping queued output.
    func abort(reason: String)

    /// Re-arms the idle deadline (traffic).
    func touchIdleDeadline()
    /// Switches to the idle deadline (request answered, upgrade done).
    func startIdleDeadline()
    /// Arms the handshake deadline (a request head or body is being read).
    func startHandshakeDeadline()
    /// Arms the connection's one deadline in `queue` (replacing any other).
    func armDeadline(in queue: DeadlineQueue)

    /// Offers kept, unconsumed input to the handler again (after a handler
    /// paused by consuming nothing while a response was awaited).
    func resumeInput()

    /// Keying material of the connection's TLS session (nil without TLS).
    func tlsExporter(label: String) -> [UInt8]?
}

extension Connection: ConnectionContext {}
