import CLibev
import Glibc
import Logging

/// One accepted socket (plain TCP or TLS) on the loop.
///
/// The connection owns the file descriptor, its libev watcher, its inbound
/// leftover and its outbound queue; the protocol lives in `handler`. Output
/// is queued and written once per loop turn (end-of-turn flush). Closing is
/// either immediate (`abort`) or polite (`closeAfterFlush`: write what is
/// queued, half-close, then wait briefly for the peer's FIN so our last bytes
/// are not destroyed by a TCP reset — the "lingering close" every HTTP server
/// needs).
final class Connection: EndOfTurnTask {
    /// Where the connection is in its life.
    enum State { case connecting, tlsHandshake, open, draining, lingering, closed }

    let fd: Int32
    let id: UInt64
    let peer: PeerAddress
    unowned let listener: Listener
    /// The listener's loop and output bound, held here because every read
    /// of the unowned `listener` is an atomic retain and release, and
    /// `send` runs once per delivered message. The loop outlives every
    /// connection, and holds one only while it waits for its end-of-turn
    /// flush, so the strong reference makes no lasting cycle.
    let loop: EventLoop
    private let maxPendingBytes: Int
    var handler: ConnectionHandler
    // `state` and `output` are touched for every frame sent, so they are
    // exempt from dynamic exclusivity checking (BENCHMARKS.md, "Checked
    // release build"). No two accesses can overlap: one thread; `state` is
    // only ever assigned or compared; OutboundQueue's methods call out to
    // nothing (no closures, no handlers), so no other access to `output`
    // can begin while one is in progress.
    @exclusivity(unchecked) private(set) var state: State
    private let io: UnsafeMutablePointer<ev_io>
    private var input = InputBuffer()
    @exclusivity(unchecked) private var output = OutboundQueue()
    private let tls: TLSSession?
    /// We dialed this connection (handlers hear `connectionEstablished` once
    /// it is usable: after connect, and after the TLS handshake if any).
    let isOutbound: Bool
    /// Length of the TLS write OpenSSL asked us to retry (it must see the same
    /// leading bytes again); 0 when no write is outstanding.
    private var tlsRetryLength = 0
    /// The TLS read wanted the socket writable (renegotiation-like cases).
    private var tlsReadWantsWrite = false
    /// The TLS write wanted the socket readable.
    private var tlsWriteWantsRead = false
    /// The one deadline this connection has at a time (handshake, idle or linger).
    private(set) lazy var deadline = DeadlineEntry { [unowned self] in self.deadlineExpired() }
    private var closeReason: String?

    var isTLS: Bool { tls != nil }
    var pendingOutputBytes: Int { output.pendingBytes }
    var isOpen: Bool { state == .open }

    /// `connecting`: an outbound socket whose non-blocking connect is in
    /// progress; it becomes open (and the handler hears
    /// `connectionEstablished`) once the socket turns writable without error.
    init(fd: Int32, id: UInt64, peer: PeerAddress, listener: Listener, tls: TLSSession?, handler: ConnectionHandler, connecting: Bool = false) {
        self.fd = fd
        self.id = id
        self.peer = peer
        self.listener = listener
        self.loop = listener.loop
        self.maxPendingBytes = listener.limits.maxPendingBytes
        self.tls = tls
        self.handler = handler
        self.state = connecting ? .connecting : (tls == nil ? .open : .tlsHandshake)
        self.isOutbound = connecting
        io = .allocate(capacity: 1)
        super.init()
        sy_ev_io_init(io, { _, w, revents in
            guard let w, let data = sy_ev_get_data(w) else { return }
            // The connection may close (and leave the listener's table)
            // inside the handler; keep it alive until the handler returns.
            let connection = Unmanaged<Connection>.fromOpaque(data).takeUnretainedValue()
            withExtendedLifetime(connection) { connection.handleEvents(revents) }
        }, fd, connecting ? Int32(EV_WRITE) : Int32(EV_READ))
        watchingWrite = connecting
        sy_ev_set_data(io, Unmanaged.passUnretained(self).toOpaque())
        ev_io_start(loop.raw, io)
        listener.handshakeDeadlines.arm(deadline)
    }

    deinit {
        io.deallocate()
        input.release()
    }

    // MARK: Sending

    /// Queues bytes for the end-of-turn flush. Past the pending-output bound
    /// the peer is a slow consumer: it is dropped with a logged reason.
    func send(_ bytes: OutboundBytes) {
        guard state == .open || state == .tlsHandshake || state == .connecting else { return }
        output.append(bytes)
        if output.chargedBytes > maxPendingBytes {
            listener.logger.warning("closing slow consumer: output queue over bound", metadata: [
                "peer": "\(peer.description)", "pending_bytes": "\(output.pendingBytes)",
                "held_bytes": "\(output.chargedBytes)",
                "bound": "\(listener.limits.maxPendingBytes)",
            ])
            listener.slowConsumerDisconnects &+= 1
            abort(reason: "slow consumer")
            return
        }
        loop.runAtEndOfTurn(self)
    }

    override func runEndOfTurn() {
        if state == .open || state == .draining { flush() }
        if finishDeferred && deliveryDepth == 0 {
            finishDeferred = false
            completeFinish()
        }
    }

    // MARK: Closing

    /// Stops reading, writes what is queued, then closes (politely).
    func closeAfterFlush(reason: String) {
        guard state == .open || state == .tlsHandshake || state == .connecting else { return }
        closeReason = reason
        state = .draining
        listener.lingerDeadlines.arm(deadline)
        flush()
    }

    /// Closes at once, dropping queued output.
    func abort(reason: String) {
        guard state != .closed else { return }
        closeReason = closeReason ?? reason
        finish()
    }

    /// The rest of a close (releasing the input, telling the handler and the
    /// listener, closing the descriptor) never runs inside the call that
    /// decided it, but at the end of the loop turn. Whoever triggered the
    /// close may still be using this connection or its handler: a handler
    /// parsing bytes that live in `input`; a session whose own send pushed it
    /// over the slow-consumer bound; a takeover (`reconnect`), load-balancing
    /// GOODBYE or READY that waited for peers, each sending to a connection
    /// that holds its session `unowned`. Freeing it there was a
    /// use-after-free (issue 10). The loop's end-of-turn list keeps the
    /// connection alive until then.
    private var deliveryDepth = 0
    private var finishDeferred = false

    private func finish() {
        guard state != .closed else { return }
        state = .closed
        ev_io_stop(loop.raw, io)
        deadline.cancel()
        output.removeAll()
        finishDeferred = true
        loop.runAtEndOfTurn(self)
    }

    /// Releases the input, tells the handler and the listener, and closes
    /// the descriptor last (so its number cannot be reused while the
    /// listener still has this connection in that slot).
    private func completeFinish() {
        input.release()
        listener.logger.debug("connection closed", metadata: ["peer": "\(peer.description)", "reason": "\(closeReason ?? "closed")"])
        handler.connectionClosed(self)
        listener.connectionDidClose(self)
        Glibc.close(fd)
    }

    // MARK: Deadlines

    /// Re-arms the idle deadline (called by handlers on traffic). O(1).
    func touchIdleDeadline() {
        guard state == .open else { return }
        listener.idleDeadlines.arm(deadline)
    }

    /// Switches from the handshake deadline to the idle one (request head read, upgrade done).
    func startIdleDeadline() { touchIdleDeadline() }

    /// Arms the handshake deadline (a request head or body is being read).
    func startHandshakeDeadline() {
        guard state == .open || state == .tlsHandshake else { return }
        listener.handshakeDeadlines.arm(deadline)
    }

    /// Arms the connection's one deadline in `queue` (replacing whichever was
    /// armed); the handler hears of it through `connectionDeadlineExpired`.
    func armDeadline(in queue: DeadlineQueue) {
        guard state == .open else { return }
        queue.arm(deadline)
    }

    private func deadlineExpired() {
        switch state {
        case .connecting:
            listener.logger.info("connect timed out", metadata: ["peer": "\(peer.description)"])
            abort(reason: "connect timeout")
        case .tlsHandshake:
            listener.reportTLSFailure(self, "TLS handshake timed out", reason: "no handshake within HANDSHAKE_TIMEOUT")
            abort(reason: "TLS handshake timeout")
        case .open:
            handler.connectionDeadlineExpired(self)
        case .draining, .lingering:
            abort(reason: closeReason ?? "linger timeout")
        case .closed:
            break
        }
    }

    // MARK: Events

    private func handleEvents(_ revents: Int32) {
        if state == .connecting {
            finishConnect()
            return
        }
        if state == .tlsHandshake {
            continueHandshake()
            return
        }
        if revents & Int32(EV_WRITE) != 0 {
            if tlsReadWantsWrite {
                tlsReadWantsWrite = false
                readAvailable()
            }
            if state == .open || state == .draining { flush() }
        }
        if revents & Int32(EV_READ) != 0 {
            if tlsWriteWantsRead {
                tlsWriteWantsRead = false
                if state == .open || state == .draining { flush() }
            }
            switch state {
            case .open: readAvailable()
            case .draining, .lingering: discardInput()
            default: break
            }
        }
    }

    /// The outbound connect finished: SO_ERROR says how.
    private func finishConnect() {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error != 0 {
            abort(reason: "connect failed: \(String(cString: strerror(error)))")
            return
        }
        if tls != nil {
            state = .tlsHandshake
            continueHandshake()
            return
        }
        state = .open
        setWatching(write: false)
        handler.connectionEstablished(self)
        if state == .open && !output.isEmpty { flush() }
    }

    /// Keying material of this connection's TLS session (nil without TLS).
    func tlsExporter(label: String) -> [UInt8]? { tls?.exportKeyingMaterial(label: label) }

    private func continueHandshake() {
        guard let tls else { return }
        switch tls.handshake() {
        case .done:
            state = .open
            listener.handshakeDeadlines.arm(deadline)
            setWatching(write: false)
            if isOutbound { handler.connectionEstablished(self) }
            // Early application data may already sit inside OpenSSL.
            readAvailable()
            if state == .open && !output.isEmpty { flush() }
        case .wantRead:
            setWatching(write: false)
        case .wantWrite:
            setWatching(write: true)
        case .closed:
            abort(reason: "closed during TLS handshake")
        case .failed(let reason):
            listener.reportTLSFailure(self, "TLS handshake failed", reason: reason)
            abort(reason: "TLS handshake failed")
        }
    }

    /// Reads what the socket (or OpenSSL) has and feeds it to the handler.
    private func readAvailable() {
        // Bounded number of rounds so one busy peer cannot starve the loop;
        // TLS must continue while OpenSSL still holds decrypted bytes.
        var rounds = 0
        while state == .open && rounds < 16 {
            rounds += 1
            let filledScratch: Bool
            if input.isEmpty {
                let scratch = UnsafeMutableRawBufferPointer(start: listener.scratch.base, count: listener.scratch.capacity)
                guard let n = receive(into: scratch) else { return }
                let consumed = deliver(UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n]))
                if state == .open && consumed < n {
                    let leftover = UnsafeRawBufferPointer(rebasing: scratch[consumed..<n])
                    if let hint = handler.bytesNeededHint, hint > leftover.count {
                        input.reserve(additional: hint)
                    }
                    input.append(leftover)
                }
                filledScratch = n == scratch.count
            } else {
                var want = max(handler.bytesNeededHint.map { $0 - input.count } ?? 0, 16 * 1024)
                if let bound = handler.maxBufferedInput { want = max(1, min(want, bound - input.count)) }
                input.reserve(additional: want)
                let space = input.writable
                guard let n = receive(into: space) else { return }
                input.didWrite(n)
                let consumed = deliver(input.readable)
                if state == .open { input.consume(consumed) } else { input.release() }
                filledScratch = n == space.count
            }
            let morePending = (tls?.pendingPlaintext ?? 0) > 0
            if !filledScratch && !morePending { return }
        }
    }

    /// One read from the socket or TLS. Returns nil when nothing came (would
    /// block) or the connection ended (it is closed then).
    private func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        if let tls {
            switch tls.read(into: buffer) {
            case .done(let n):
                listener.bytesIn &+= UInt64(n)
                return n
            case .wantRead:
                return nil
            case .wantWrite:
                tlsReadWantsWrite = true
                setWatching(write: true)
                return nil
            case .closed:
                abort(reason: "peer closed")
                return nil
            case .failed(let reason):
                listener.reportTLSFailure(self, "TLS read failed", reason: reason)
                abort(reason: "TLS error")
                return nil
            }
        }
        let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
        if n > 0 {
            listener.bytesIn &+= UInt64(n)
            return n
        }
        if n == 0 {
            abort(reason: "peer closed")
            return nil
        }
        let e = errno
        if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return nil }
        abort(reason: "read error: \(String(cString: strerror(e)))")
        return nil
    }

    /// Hands bytes to the handler, and to its successor if it upgraded.
    private func deliver(_ bytes: UnsafeMutableRawBufferPointer) -> Int {
        deliveryDepth += 1
        defer {
            deliveryDepth -= 1
            if deliveryDepth == 0 && finishDeferred { loop.runAtEndOfTurn(self) }
        }
        var offset = 0
        while offset < bytes.count && state == .open {
            let current = handler
            offset += current.connection(self, received: UnsafeMutableRawBufferPointer(rebasing: bytes[offset...]))
            if current === handler { break }
        }
        return offset
    }

    /// Offers the kept, unconsumed input to the handler again (a handler that
    /// paused — an HTTP request waiting for peers — calls this when it can go on).
    func resumeInput() {
        guard state == .open, !input.isEmpty else { return }
        let consumed = deliver(input.readable)
        if state == .open { input.consume(consumed) } else { input.release() }
    }

    /// While draining or lingering, input is read and dropped so the kernel
    /// never answers our close with a reset.
    private func discardInput() {
        let scratch = UnsafeMutableRawBufferPointer(start: listener.scratch.base, count: listener.scratch.capacity)
        if let tls {
            switch tls.read(into: scratch) {
            case .done, .wantRead, .wantWrite: return
            case .closed, .failed: abort(reason: closeReason ?? "closed")
            }
            return
        }
        let n = Glibc.read(fd, scratch.baseAddress, scratch.count)
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
            abort(reason: closeReason ?? "closed")
        }
    }

    // MARK: Writing

    private static let maxIOVecs = 64
    private static let iovecs = UnsafeMutableBufferPointer<iovec>.allocate(capacity: maxIOVecs)

    private func flush() {
        while !output.isEmpty {
            let written: Int
            if let tls {
                let staging = listener.tlsStaging
                let length = tlsRetryLength > 0 ? tlsRetryLength : output.copyFront(into: staging)
                if tlsRetryLength > 0 { _ = output.copyFront(into: UnsafeMutableRawBufferPointer(rebasing: staging[0..<length])) }
                switch tls.write(UnsafeRawBufferPointer(rebasing: staging[0..<length])) {
                case .done(let n):
                    tlsRetryLength = 0
                    written = n
                case .wantWrite:
                    tlsRetryLength = length
                    setWatching(write: true)
                    return
                case .wantRead:
                    // Retried when the socket is readable, not on every
                    // writable event (which would spin).
                    tlsRetryLength = length
                    tlsWriteWantsRead = true
                    return
                case .closed:
                    abort(reason: "peer closed")
                    return
                case .failed(let reason):
                    listener.reportTLSFailure(self, "TLS write failed", reason: reason)
                    abort(reason: "TLS error")
                    return
                }
            } else {
                let count = output.fill(Connection.iovecs)
                let n = writev(fd, Connection.iovecs.baseAddress, Int32(count))
                if n < 0 {
                    let e = errno
                    if e == EAGAIN || e == EWOULDBLOCK || e == EINTR {
                        setWatching(write: true)
                        return
                    }
                    abort(reason: "write error: \(String(cString: strerror(e)))")
                    return
                }
                written = n
            }
            listener.bytesOut &+= UInt64(written)
            output.advance(written, recyclingInto: loop.framePool)
        }
        setWatching(write: tlsReadWantsWrite)
        if state == .draining { startLingering() }
    }

    private func startLingering() {
        state = .lingering
        tls?.shutdown()
        Glibc.shutdown(fd, Int32(SHUT_WR))
        listener.lingerDeadlines.arm(deadline)
    }

    private var watchingWrite = false
    /// Why the connection ended (for the handler's log lines).
    var endReason: String? { closeReason }

    private func setWatching(write: Bool) {
        guard write != watchingWrite, state != .closed else { return }
        watchingWrite = write
        ev_io_stop(loop.raw, io)
        sy_ev_io_modify(io, Int32(EV_READ) | (write ? Int32(EV_WRITE) : 0))
        ev_io_start(loop.raw, io)
    }
}
