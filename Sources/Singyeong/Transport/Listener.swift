import CLibev
import CSystem
import Glibc
import Logging

/// Bounds that protect the node from any one peer.
struct TransportLimits {
    /// Unsent bytes one connection may have queued before it is dropped as a slow consumer.
    var maxPendingBytes = 16 * 1024 * 1024
    /// Seconds for the TLS handshake plus a complete request head (and body).
    var handshakeTimeout = 10.0
    /// Seconds without input before an idle connection is closed.
    var idleTimeout = 60.0
    /// Seconds to wait for the peer's FIN after our half-close.
    var lingerTimeout = 2.0
    /// SO_SNDBUF of accepted sockets; 0 = the kernel's autotuning. Caps what
    /// the kernel holds for a peer that does not read, on top of
    /// `maxPendingBytes` (autotuning lets that grow to tcp_wmem's maximum).
    var socketSendBuffer = 0
}

/// Error opening the listening socket, with the failing step in the message.
struct ListenError: Error, CustomStringConvertible {
    var description: String
}

/// The listening socket and the table of live connections.
///
/// Accepts in batches on readiness (level-triggered, so a batch cap keeps the
/// loop fair), makes each socket non-blocking with TCP_NODELAY, and starts it
/// on a TLS handshake when a context is configured. The table is indexed by
/// file descriptor: O(1) and no hashing.
final class Listener {
    let loop: EventLoop
    let logger: Logger
    let limits: TransportLimits
    let scratch: ReadScratch
    /// One TLS record's worth of plaintext, reused by every TLS connection's flush.
    let tlsStaging: UnsafeMutableRawBufferPointer
    /// New connections use the current context; SIGHUP replaces it.
    var tlsContext: TLSContext?
    let handshakeDeadlines: DeadlineQueue
    let idleDeadlines: DeadlineQueue
    let lingerDeadlines: DeadlineQueue
    /// Makes the first protocol handler of a new connection.
    private let makeHandler: () -> ConnectionHandler
    private var fd: Int32 = -1
    private let io: UnsafeMutablePointer<ev_io>
    private var connections: [Connection?] = []
    private var nextID: UInt64 = 1
    private(set) var connectionCount = 0
    private var acceptPause: LoopTimer?
    /// Totals for metrics; bumped on every read and write, so exempt from
    /// dynamic exclusivity checking: a `&+=` on an integer calls nothing,
    /// so no other access can overlap it (one thread).
    @exclusivity(unchecked) var bytesIn: UInt64 = 0
    @exclusivity(unchecked) var bytesOut: UInt64 = 0
    var slowConsumerDisconnects: UInt64 = 0
    private(set) var acceptedTotal: UInt64 = 0
    /// Called when the last connection is gone during shutdown.
    var onAllClosed: (() -> Void)?
    /// Replaces the one info line per TLS failure: the cluster rate-limits
    /// them per source (anyone can fail TLS on the cluster port as often
    /// as they like).
    var tlsFailureHook: ((_ connection: Connection, _ what: String, _ reason: String) -> Void)?

    /// A connection's TLS handshake, read or write failed.
    func reportTLSFailure(_ connection: Connection, _ what: String, reason: String) {
        if let tlsFailureHook {
            tlsFailureHook(connection, what, reason)
            return
        }
        logger.info("\(what)", metadata: ["peer": "\(connection.peer.description)", "reason": "\(reason)"])
    }
    private(set) var isAccepting = false

    init(loop: EventLoop, logger: Logger, limits: TransportLimits, tlsContext: TLSContext?, makeHandler: @escaping () -> ConnectionHandler) {
        self.loop = loop
        self.logger = logger
        self.limits = limits
        self.tlsContext = tlsContext
        self.makeHandler = makeHandler
        scratch = ReadScratch()
        tlsStaging = .allocate(byteCount: 16 * 1024, alignment: 16)
        handshakeDeadlines = DeadlineQueue(loop: loop, duration: limits.handshakeTimeout)
        idleDeadlines = DeadlineQueue(loop: loop, duration: limits.idleTimeout)
        lingerDeadlines = DeadlineQueue(loop: loop, duration: limits.lingerTimeout)
        io = .allocate(capacity: 1)
    }

    /// Binds and listens on `host`:`port` (`::` means dual stack).
    func bind(host: String, port: Int) throws(ListenError) {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST
        hints.ai_socktype = SY_SOCK_STREAM
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let info = result else {
            throw ListenError(description: "BIND \(host): not a numeric IPv4/IPv6 address (\(String(cString: gai_strerror(rc))))")
        }
        defer { freeaddrinfo(result) }
        let s = socket(info.pointee.ai_family, SY_SOCK_STREAM | SY_SOCK_NONBLOCK | SY_SOCK_CLOEXEC, 0)
        guard s >= 0 else { throw ListenError(description: "socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if info.pointee.ai_family == AF_INET6 {
            var zero: Int32 = 0
            setsockopt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
        }
        guard Glibc.bind(s, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let e = errno
            Glibc.close(s)
            throw ListenError(description: "cannot listen on \(host) port \(port): \(String(cString: strerror(e)))")
        }
        guard listen(s, 4096) == 0 else {
            let e = errno
            Glibc.close(s)
            throw ListenError(description: "listen(): \(String(cString: strerror(e)))")
        }
        fd = s
        sy_ev_io_init(io, { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            Unmanaged<Listener>.fromOpaque(data).takeUnretainedValue().acceptBatch()
        }, s, Int32(EV_READ))
        sy_ev_set_data(io, Unmanaged.passUnretained(self).toOpaque())
        ev_io_start(loop.raw, io)
        isAccepting = true
    }

    /// The port actually bound (useful with PORT=0 in tests).
    var boundPort: Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(PeerAddress(storage).port)
    }

    private func acceptBatch() {
        for _ in 0..<256 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let c = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(fd, $0, &length, SY_SOCK_NONBLOCK | SY_SOCK_CLOEXEC)
                }
            }
            if c < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED { return }
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM {
                    // Out of descriptors: stop accepting for a moment rather
                    // than spin on a listener that stays readable.
                    logger.error("accept failed, pausing accepts for 100 ms", metadata: ["error": "\(String(cString: strerror(e)))", "connections": "\(connectionCount)"])
                    pauseAccepting(seconds: 0.1)
                    return
                }
                logger.warning("accept failed", metadata: ["error": "\(String(cString: strerror(e)))"])
                return
            }
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if limits.socketSendBuffer > 0 {
                var size = Int32(limits.socketSendBuffer)
                setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            var session: TLSSession?
            if let tlsContext {
                session = TLSSession(context: tlsContext, fd: c)
                if session == nil {
                    logger.error("SSL_new failed; dropping connection", metadata: ["reason": "\(TLSContext.drainErrors())"])
                    Glibc.close(c)
                    continue
                }
            }
            let connection = Connection(fd: c, id: nextID, peer: PeerAddress(storage), listener: self, tls: session, handler: makeHandler())
            nextID += 1
            acceptedTotal += 1
            register(connection)
        }
    }

    private func pauseAccepting(seconds: Double) {
        ev_io_stop(loop.raw, io)
        if acceptPause == nil {
            acceptPause = LoopTimer(loop: loop) { [unowned self] in
                if self.isAccepting { ev_io_start(self.loop.raw, self.io) }
            }
        }
        acceptPause?.start(after: seconds)
    }

    /// Starts a non-blocking outbound connection to a numeric `host`:`port`
    /// (no DNS on the loop). Returns nil, with `error` set, when the socket
    /// cannot even be created; a refused or timed-out connect arrives later
    /// as `connectionClosed` on `handler`.
    func dial(host: String, port: Int, handler: ConnectionHandler, tls: TLSContext? = nil, error: inout String) -> Connection? {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
        hints.ai_socktype = SY_SOCK_STREAM
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            error = "\(host) is not a numeric address"
            return nil
        }
        defer { freeaddrinfo(result) }
        let c = socket(info.pointee.ai_family, SY_SOCK_STREAM | SY_SOCK_NONBLOCK | SY_SOCK_CLOEXEC, 0)
        guard c >= 0 else {
            error = "socket(): \(String(cString: strerror(errno)))"
            return nil
        }
        var one: Int32 = 1
        setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = Glibc.connect(c, info.pointee.ai_addr, info.pointee.ai_addrlen)
        if rc != 0 && errno != EINPROGRESS {
            error = "connect(): \(String(cString: strerror(errno)))"
            Glibc.close(c)
            return nil
        }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen))) }
        var session: TLSSession?
        if let tls {
            session = TLSSession(context: tls, fd: c, client: true)
            if session == nil {
                error = "SSL_new failed: \(TLSContext.drainErrors())"
                Glibc.close(c)
                return nil
            }
        }
        let connection = Connection(fd: c, id: nextID, peer: PeerAddress(storage), listener: self, tls: session, handler: handler, connecting: true)
        nextID += 1
        register(connection)
        return connection
    }

    private func register(_ connection: Connection) {
        let index = Int(connection.fd)
        if index >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: max(index + 1 - connections.count, connections.count)))
        }
        connections[index] = connection
        connectionCount += 1
    }

    /// Called by a connection once it has closed its socket.
    func connectionDidClose(_ connection: Connection) {
        let index = Int(connection.fd)
        if index < connections.count, connections[index] === connection {
            connections[index] = nil
            connectionCount -= 1
        }
        if connectionCount == 0, !isAccepting, let onAllClosed {
            self.onAllClosed = nil
            onAllClosed()
        }
    }

    /// Stops accepting and closes the listening socket.
    func stopAccepting() {
        guard isAccepting else { return }
        isAccepting = false
        ev_io_stop(loop.raw, io)
        acceptPause?.stop()
        Glibc.close(fd)
    }

    /// Every live connection (snapshot; for shutdown).
    var liveConnections: [Connection] { connections.compactMap { $0 } }
}
