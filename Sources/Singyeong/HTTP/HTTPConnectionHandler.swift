import Logging

/// HTTP/1.1 on one connection: reads request heads and bodies, has the
/// `HTTPApplication` answer them in order (keep-alive and pipelining: every
/// complete request in the buffer is answered in turn, and responses are
/// queued in request order), and hands the connection over on an upgrade
/// the application routes (the gateway's WebSocket).
///
/// Timing: the handshake deadline covers each request from its first byte to
/// its last body byte (a slow-loris peer cannot hold a connection by trickling
/// a head); between requests the idle deadline applies.
final class HTTPConnectionHandler: ConnectionHandler {
    /// What the requests mean (the REST routes); the node owns it.
    unowned let application: HTTPApplication
    let limits: HTTPParserLimits
    let logger: Logger
    private var head = HTTPRequestHead()
    /// A request has started arriving (its deadline is running).
    private var requestInProgress = false
    /// Head + body length of the request waiting for its body, if any.
    private var waitingFor: Int?
    /// A response is being computed elsewhere (a cluster query, a proxied
    /// request); later pipelined requests wait so responses stay in order.
    private var awaitingResponse = false
    /// Aborts the work behind the awaited response if the caller leaves.
    private var cancelAwaited: (() -> Void)?
    /// Shutdown began while a response was awaited: send it, then close.
    private var closeAfterAwaited = false

    init(application: HTTPApplication, limits: HTTPParserLimits, logger: Logger) {
        self.application = application
        self.limits = limits
        self.logger = logger
    }

    var bytesNeededHint: Int? { waitingFor }

    func connection(_ connection: ConnectionContext, received bytes: UnsafeMutableRawBufferPointer) -> Int {
        if awaitingResponse {
            // Keep pipelined bytes for later, within the limits of one request.
            if bytes.count > limits.maxHeadSize + limits.maxBodySize {
                logger.info("closing: too much pipelined input while a response is pending", metadata: ["peer": "\(connection.peer.description)"])
                connection.abort(reason: "pipelined input over bound")
            }
            return 0
        }
        var offset = 0
        while offset < bytes.count && connection.isOpen && connection.handler === self && !awaitingResponse {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            if !requestInProgress {
                requestInProgress = true
                connection.startHandshakeDeadline()
            }
            switch HTTPRequestParser.parseHead(rest, limits: limits, into: &head) {
            case .incomplete:
                return offset
            case .failure(let error):
                logger.info("bad HTTP request", metadata: [
                    "peer": "\(connection.peer.description)", "status": "\(error.status)", "reason": "\(error.reason)",
                ])
                respondAndClose(connection, .errorDetail(error.status, "\(HTTPResponse.reasonPhrase(error.status)): \(error.reason)"))
                return bytes.count
            case .complete:
                break
            }
            if head.isChunked {
                respondAndClose(connection, .errorDetail(411, "chunked request bodies are not supported; send Content-Length"))
                return bytes.count
            }
            let total = head.headLength + (head.contentLength ?? 0)
            guard rest.count >= total else {
                waitingFor = total
                return offset
            }
            waitingFor = nil
            requestInProgress = false
            let body = UnsafeRawBufferPointer(rebasing: rest[head.headLength..<total])
            handle(connection, request: rest, body: body)
            offset += total
        }
        if connection.isOpen && connection.handler === self && !requestInProgress && !awaitingResponse {
            connection.startIdleDeadline()
        }
        return offset
    }

    /// Routes one complete request. `buffer` starts at the request's head.
    private func handle(_ connection: ConnectionContext, request buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) {
        if let upgrade = application.upgrade(for: head, in: buffer) {
            if let refusal = upgrade.takeOver(connection, request: head, in: buffer) {
                respondAndClose(connection, refusal)
            }
            return
        }
        let keepAlive = head.keepAlive
        let isHead = head.method == .head
        var cancel: (() -> Void)?
        let immediate = application.respond(to: head, in: buffer, body: body, peer: connection.peer, later: { [weak self, weak connection] response in
            guard let self, let connection else { return }
            self.awaitingResponse = false
            self.cancelAwaited = nil
            self.finish(connection, response, keepAlive: keepAlive && !self.closeAfterAwaited, isHead: isHead)
            if connection.isOpen && connection.handler === self && !self.closeAfterAwaited {
                connection.startIdleDeadline()
                connection.resumeInput()
            }
        }, onCancel: { cancel = $0 })
        if let immediate {
            finish(connection, immediate, keepAlive: keepAlive, isHead: isHead)
        } else {
            awaitingResponse = true
            cancelAwaited = cancel
        }
    }

    private func finish(_ connection: ConnectionContext, _ response: HTTPResponse, keepAlive: Bool, isHead: Bool) {
        var response = response
        if isHead { response.omitBody = true }
        connection.send(response.encoded(keepAlive: keepAlive))
        if !keepAlive {
            connection.closeAfterFlush(reason: "HTTP request without keep-alive")
        }
    }

    private func respondAndClose(_ connection: ConnectionContext, _ response: HTTPResponse) {
        connection.send(response.encoded(keepAlive: false))
        connection.closeAfterFlush(reason: "HTTP \(response.status)")
    }

    func connectionShouldShutDown(_ connection: ConnectionContext) {
        if awaitingResponse {
            // The answer is on its way (within the drain time, or the node's
            // shutdown timer cuts it): send it with `connection: close`.
            closeAfterAwaited = true
            return
        }
        // A request being read is cut short; an idle keep-alive connection just goes.
        connection.closeAfterFlush(reason: "shutdown")
    }

    func connectionDeadlineExpired(_ connection: ConnectionContext) {
        if awaitingResponse {
            // The request is complete; its answer waits for peers or an
            // upstream, whose own deadlines bound the wait
            // (CLUSTER_QUERY_TIMEOUT_MS; PROXY_TIMEOUT, + 5 s across nodes).
            connection.startHandshakeDeadline()
            return
        }
        if requestInProgress {
            logger.info("HTTP request timed out", metadata: ["peer": "\(connection.peer.description)"])
            respondAndClose(connection, .errorDetail(408, "Request Timeout: the request was not received in time"))
        } else {
            connection.closeAfterFlush(reason: "keep-alive idle timeout")
        }
    }

    func connectionClosed(_ connection: ConnectionContext) {
        cancelAwaited?()
        cancelAwaited = nil
    }
}
