import CCurl
import CLibev
import Glibc
import Logging

/// libcurl's process-wide set-up. It must run once before any handle exists;
/// Swift runs a global's initialiser exactly once, thread-safely.
private let curlGlobalSetUp: CURLcode = curl_global_init(SY_CURL_GLOBAL_DEFAULT)

/// Outgoing HTTP(S) for the proxy: libcurl's multi-socket interface driven
/// by the node's libev loop.
///
/// The node has one thread, so an upstream request must never block it and
/// must not need a thread of its own: libcurl tells us which sockets to watch
/// (CURLMOPT_SOCKETFUNCTION → one `ev_io` per socket) and when it next needs
/// a call (CURLMOPT_TIMERFUNCTION → one `ev_timer`), and we call
/// `curl_multi_socket_action` when those fire. One multi handle serves the
/// process, so its connection cache keeps upstream connections alive between
/// requests to the same host.
///
/// libcurl forbids calling most of its API from inside its callbacks, and
/// callers' completions may do anything (start another request, cancel one,
/// shut the client down). So callbacks only record state; finished transfers
/// are collected with `curl_multi_info_read` after `curl_multi_socket_action`
/// returns, and completed there. Nothing completes synchronously inside
/// `perform`: even a request that fails up front completes on a later turn.
final class UpstreamClient {
    private let loop: OpaquePointer
    private let logger: Logger
    let totalTimeoutMilliseconds: Int
    let connectTimeoutMilliseconds: Int
    let maxResponseBodyBytes: Int
    /// Most transfers at once; more fail with "too many proxied requests in flight".
    let maxInFlight: Int
    /// Where transfers may connect (PROXY_DENY, this node's own ports). The
    /// node fills in its ports once it has bound them.
    var egress: EgressPolicy
    /// PROXY_MAX_BUFFERED_BYTES: response body bytes all transfers together may hold.
    let maxBufferedBytes: Int
    /// Body bytes the transfers hold now.
    private(set) var bufferedBytes = 0
    /// PROXY_MAX_PENDING_LOOKUPS: transfers whose host name may still be resolving.
    let maxPendingLookups: Int
    /// When lookups abandoned by their transfer (cancelled, timed out) stop
    /// counting: libcurl detaches their helper thread (CURLOPT_QUICK_EXIT),
    /// which keeps running until the resolver gives up.
    private var abandonedLookupExpiries: [Double] = []
    /// How long a detached lookup is assumed to run at most: glibc's resolver
    /// gives up after 5 s × 2 attempts × 3 name servers by default.
    static let abandonedLookupLinger: Double = 30
    /// nil after `shutdown()`.
    private var multi: UnsafeMutableRawPointer?
    /// The one timer libcurl asks for (CURLMOPT_TIMERFUNCTION).
    private let curlTimer: UnsafeMutablePointer<ev_timer>
    /// Fires on the next turn to complete transfers that failed before libcurl ran them.
    private let deferTimer: UnsafeMutablePointer<ev_timer>
    /// The sockets libcurl asked us to watch, by descriptor.
    private var sockets: [Int32: UpstreamSocketWatcher] = [:]
    /// Transfers attached to the multi handle, by easy handle. This table is
    /// what keeps a transfer alive while libcurl holds pointers to it.
    private var transfers: [UnsafeMutableRawPointer: UpstreamTransfer] = [:]
    /// Transfers whose failure is reported on the next turn.
    private var deferred: [UpstreamTransfer] = []
    private var nextSequence: UInt64 = 0

    /// - Parameter maxConnections: idle upstream connections kept for reuse (CURLMOPT_MAXCONNECTS).
    convenience init(loop: EventLoop, logger: Logger, totalTimeoutMilliseconds: Int, connectTimeoutMilliseconds: Int = 15_000,
                     maxResponseBodyBytes: Int, maxConnections: Int = 64, maxInFlight: Int = 1024,
                     egress: EgressPolicy = EgressPolicy(), maxBufferedBytes: Int = .max, maxPendingLookups: Int = .max) {
        self.init(rawLoop: loop.raw, logger: logger, totalTimeoutMilliseconds: totalTimeoutMilliseconds,
                  connectTimeoutMilliseconds: connectTimeoutMilliseconds, maxResponseBodyBytes: maxResponseBodyBytes,
                  maxConnections: maxConnections, maxInFlight: maxInFlight, egress: egress,
                  maxBufferedBytes: maxBufferedBytes, maxPendingLookups: maxPendingLookups)
    }

    /// On any libev loop (tests use private loops so they can run in parallel
    /// with others that drive the default loop).
    init(rawLoop: OpaquePointer, logger: Logger, totalTimeoutMilliseconds: Int, connectTimeoutMilliseconds: Int = 15_000,
         maxResponseBodyBytes: Int, maxConnections: Int = 64, maxInFlight: Int = 1024,
         egress: EgressPolicy = EgressPolicy(), maxBufferedBytes: Int = .max, maxPendingLookups: Int = .max) {
        precondition(curlGlobalSetUp == CURLE_OK, "libcurl: curl_global_init failed")
        guard let multi = curl_multi_init() else { fatalError("libcurl: curl_multi_init failed") }
        self.loop = rawLoop
        self.logger = logger
        self.totalTimeoutMilliseconds = totalTimeoutMilliseconds
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.maxInFlight = maxInFlight
        self.egress = egress
        self.maxBufferedBytes = maxBufferedBytes
        self.maxPendingLookups = maxPendingLookups
        self.multi = multi
        curlTimer = .allocate(capacity: 1)
        deferTimer = .allocate(capacity: 1)
        sy_ev_timer_init(curlTimer, { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            let client = Unmanaged<UpstreamClient>.fromOpaque(data).takeUnretainedValue()
            withExtendedLifetime(client) { client.curlTimerFired() }
        }, 0, 0)
        sy_ev_timer_init(deferTimer, { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            let client = Unmanaged<UpstreamClient>.fromOpaque(data).takeUnretainedValue()
            withExtendedLifetime(client) { client.completeDeferred() }
        }, 0, 0)
        let me = Unmanaged.passUnretained(self).toOpaque()
        sy_ev_set_data(curlTimer, me)
        sy_ev_set_data(deferTimer, me)
        _ = sy_curl_multi_setopt_socket_function(multi, upstreamSocketCallback)
        _ = sy_curl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
        _ = sy_curl_multi_setopt_timer_function(multi, upstreamTimerCallback)
        _ = sy_curl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
        _ = sy_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(maxConnections, 1))
    }

    deinit {
        shutdown()
        deferTimer.deallocate()
        curlTimer.deallocate()
    }

    /// Transfers started and not yet completed or cancelled.
    var activeTransfers: Int { transfers.count + deferred.count }

    /// What is left of PROXY_MAX_BUFFERED_BYTES.
    var bufferBudgetLeft: Int { max(0, maxBufferedBytes - bufferedBytes) }

    /// Counts `count` more buffered body bytes, unless that passes the budget.
    func chargeBuffered(_ count: Int) -> Bool {
        guard count <= bufferBudgetLeft else { return false }
        bufferedBytes += count
        return true
    }

    func releaseBuffered(_ count: Int) {
        bufferedBytes -= count
        assert(bufferedBytes >= 0)
    }

    /// Host names being resolved for transfers, and abandoned lookups
    /// presumably still running on a detached helper thread.
    var pendingLookups: Int {
        let now = ev_now(loop)
        abandonedLookupExpiries.removeAll { $0 <= now }
        return abandonedLookupExpiries.count + transfers.values.reduce(0) { $0 + ($1.lookupStartedAt == nil ? 0 : 1) }
    }

    /// Starts the exchange; `completion` runs later on the loop thread,
    /// exactly once (never inside `perform`), unless the transfer is cancelled.
    @discardableResult
    func perform(_ request: UpstreamRequest, completion: @escaping (Result<UpstreamResponse, UpstreamFailure>) -> Void) -> UpstreamTransfer {
        nextSequence += 1
        if transfers.count >= maxInFlight {
            // Each transfer may buffer a response and hold a resolver thread:
            // past the bound, refuse rather than grow without limit.
            let transfer = UpstreamTransfer(client: self, sequence: nextSequence, summary: Self.summary(of: request),
                                            maxBodyBytes: maxResponseBodyBytes, completion: completion)
            failLater(transfer, .tooManyInFlight(maxInFlight))
            return transfer
        }
        let transfer = UpstreamTransfer(client: self, sequence: nextSequence, summary: Self.summary(of: request),
                                        maxBodyBytes: maxResponseBodyBytes, completion: completion)
        guard let multi else {
            failLater(transfer, .shuttingDown)
            return transfer
        }
        if Self.hostIsName(request.url) {
            // libcurl resolves a name on a helper thread of its own; bound them.
            guard pendingLookups < maxPendingLookups else {
                failLater(transfer, .tooManyLookups(maxPendingLookups))
                return transfer
            }
            transfer.lookupStartedAt = ev_now(loop)
        }
        if let failure = configure(transfer, for: request) {
            transfer.releaseCurlState()
            failLater(transfer, failure)
            return transfer
        }
        guard let easy = transfer.easy else {
            failLater(transfer, UpstreamFailure(reason: "curl: no easy handle"))
            return transfer
        }
        transfers[easy] = transfer
        // Adding only arms libcurl's timer (at 0 ms); the transfer starts when it fires.
        let code = curl_multi_add_handle(multi, easy)
        if code != CURLM_OK {
            transfers.removeValue(forKey: easy)
            transfer.releaseCurlState()
            failLater(transfer, UpstreamFailure(reason: "curl: \(String(cString: curl_multi_strerror(code)))"))
        }
        return transfer
    }

    /// Aborts every transfer (each completion gets "shutting down"), closes
    /// the cached connections and frees libcurl's state. Later `perform`
    /// calls fail with "shutting down" (on a later turn).
    func shutdown() {
        var abandoned = Array(transfers.values) + deferred
        transfers = [:]
        deferred = []
        if let multi {
            for transfer in abandoned {
                if let easy = transfer.easy { curl_multi_remove_handle(multi, easy) }
                transfer.releaseCurlState()
            }
            // Closes the cached connections; libcurl unregisters their sockets through our callback.
            curl_multi_cleanup(multi)
            self.multi = nil
        }
        for watcher in sockets.values { watcher.stop() }
        sockets = [:]
        ev_timer_stop(loop, curlTimer)
        ev_timer_stop(loop, deferTimer)
        abandoned.sort { $0.sequence < $1.sequence }
        for transfer in abandoned {
            transfer.finish(.failure(transfer.deferredFailure ?? .shuttingDown))
        }
    }

    /// A cancelled transfer leaves the client; its completion is never called.
    func forget(_ transfer: UpstreamTransfer) {
        if let easy = transfer.easy, transfers.removeValue(forKey: easy) != nil, let multi {
            curl_multi_remove_handle(multi, easy)
            abandonLookup(of: transfer)
        }
        if let index = deferred.firstIndex(where: { $0 === transfer }) {
            deferred.remove(at: index)
        }
    }

    // MARK: Setting up a transfer

    /// Creates and configures the transfer's easy handle. Returns why the
    /// request cannot be sent, or nil.
    private func configure(_ transfer: UpstreamTransfer, for request: UpstreamRequest) -> UpstreamFailure? {
        guard HTTPRequestParser.isToken(request.method) else { return UpstreamFailure(reason: "invalid method") }
        guard let easy = curl_easy_init() else { return UpstreamFailure(reason: "curl: out of memory") }
        transfer.easy = easy

        // Request headers, exactly as given. libcurl's convention: "Name:"
        // removes a header, "Name;" sends it with an empty value.
        var given = Set<String>()
        for (name, value) in request.headers {
            guard HTTPRequestParser.isToken(name), Self.isFieldValue(value) else {
                return UpstreamFailure(reason: "invalid request header")
            }
            given.insert(name.lowercased())
            let blank = value.utf8.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            guard transfer.appendHeader(blank ? "\(name);" : "\(name): \(value)") else {
                return UpstreamFailure(reason: "curl: out of memory")
            }
        }
        // Headers libcurl would add on its own: the proxy must not invent them.
        for (lower, suppression) in [("expect", "Expect:"), ("accept", "Accept:"), ("content-type", "Content-Type:")]
        where !given.contains(lower) {
            guard transfer.appendHeader(suppression) else { return UpstreamFailure(reason: "curl: out of memory") }
        }

        var failed = CURLE_OK
        func check(_ code: CURLcode) { if failed == CURLE_OK { failed = code } }
        check(sy_curl_easy_setopt_str(easy, CURLOPT_URL, request.url))
        // Use the path as given ("/a/../b" and "//" are not rewritten).
        check(sy_curl_easy_setopt_long(easy, CURLOPT_PATH_AS_IS, 1))
        check(sy_curl_easy_setopt_str(easy, CURLOPT_PROTOCOLS_STR, "http,https"))
        check(sy_curl_easy_setopt_str(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, 10))
        // HTTP/1.1 end to end: headers go out exactly as given (HTTP/2 would
        // lower-case and drop some), and each request has its own connection state.
        check(sy_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1)))
        // Environment variables (http_proxy, ...) must not reroute upstream traffic.
        check(sy_curl_easy_setopt_str(easy, CURLOPT_PROXY, ""))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        // Debian's libcurl resolves names on a helper thread; a transfer that
        // ends (timeout, cancel, shutdown) while a lookup runs would otherwise
        // *join* that thread on the loop thread — seconds with a stalled DNS
        // server. QUICK_EXIT (7.87+) detaches it instead.
        check(sy_curl_easy_setopt_long(easy, CURLOPT_QUICK_EXIT, 1))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, max(connectTimeoutMilliseconds, 1)))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(totalTimeoutMilliseconds, 1)))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2))
        check(sy_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1))
        check(sy_curl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, transfer.errorBuffer))
        let me = Unmanaged.passUnretained(transfer).toOpaque()
        check(sy_curl_easy_setopt_write_function(easy, CURLOPT_WRITEFUNCTION, upstreamWriteCallback))
        check(sy_curl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, me))
        check(sy_curl_easy_setopt_write_function(easy, CURLOPT_HEADERFUNCTION, upstreamHeaderCallback))
        check(sy_curl_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, me))
        check(sy_curl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, transfer.headerList))
        // The egress policy sees every address before a socket exists.
        check(sy_curl_easy_setopt_opensocket_function(easy, upstreamOpenSocketCallback))
        check(sy_curl_easy_setopt_ptr(easy, CURLOPT_OPENSOCKETDATA, me))
        check(sy_curl_easy_setopt_prereq_function(easy, upstreamPrereqCallback))
        check(sy_curl_easy_setopt_ptr(easy, CURLOPT_PREREQDATA, me))

        switch request.method {
        case "HEAD":
            check(sy_curl_easy_setopt_long(easy, CURLOPT_NOBODY, 1))
        case "GET" where request.body == nil:
            check(sy_curl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case "POST":
            // A POST without a body still says `Content-Length: 0`.
            check(Self.setBody(easy, request.body ?? []))
        default:
            if let body = request.body {
                check(Self.setBody(easy, body))
            } else {
                check(sy_curl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1))
            }
            // libcurl keeps a custom method (PUT, PATCH, DELETE) and its body
            // on every redirect, 303 included (only POST becomes GET on
            // 301/302/303): the upstream's redirect target gets the same request.
            check(sy_curl_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, request.method))
        }
        if failed != CURLE_OK {
            return UpstreamFailure(reason: "curl: \(String(cString: curl_easy_strerror(failed)))")
        }
        return nil
    }

    /// Sends `body` as the request body (libcurl copies it, with its length, so
    /// binary bytes and NULs are fine).
    private static func setBody(_ easy: UnsafeMutableRawPointer, _ body: [UInt8]) -> CURLcode {
        var code = sy_curl_easy_setopt_long(easy, CURLOPT_POST, 1)
        guard code == CURLE_OK else { return code }
        code = sy_curl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
        guard code == CURLE_OK else { return code }
        if body.isEmpty {
            // COPYPOSTFIELDS needs a non-NULL pointer even for zero bytes.
            var nothing: UInt8 = 0
            return withUnsafeMutablePointer(to: &nothing) { sy_curl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, $0) }
        }
        return body.withUnsafeBytes { sy_curl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
    }

    /// A header value that cannot inject lines or truncate the C string.
    private static func isFieldValue(_ text: String) -> Bool {
        !text.utf8.contains { $0 == 0 || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }
    }

    /// Whether the URL's host is a name (resolved on a helper thread) rather
    /// than an IP literal, as libcurl's own URL parser sees it. A URL it
    /// cannot parse fails without a lookup.
    static func hostIsName(_ url: String) -> Bool {
        guard let handle = curl_url() else { return true }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, url, 0) == CURLUE_OK else { return false }
        var host: UnsafeMutablePointer<CChar>?
        guard curl_url_get(handle, CURLUPART_HOST, &host, 0) == CURLUE_OK, let host else { return false }
        defer { curl_free(host) }
        return IPAddress(String(cString: host)) == nil
    }

    /// A transfer leaves while its name may still be resolving: its detached
    /// helper thread keeps counting until the resolver would have given up.
    private func abandonLookup(of transfer: UpstreamTransfer) {
        guard let started = transfer.lookupStartedAt else { return }
        transfer.lookupStartedAt = nil
        let expiry = started + Self.abandonedLookupLinger
        if expiry > ev_now(loop) { abandonedLookupExpiries.append(expiry) }
    }

    /// Method and URL without the query (which may carry secrets), for logs.
    private static func summary(of request: UpstreamRequest) -> String {
        let url = request.url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        // Method and route may come from a REST caller or a peer: escaped for the log.
        return LogText.escape("\(request.method) \(url)", limit: 512)
    }

    // MARK: Driving libcurl from the loop

    /// libcurl wants `fd` watched for `what` (CURL_POLL_*), or no longer watched.
    fileprivate func watchSocket(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            sockets.removeValue(forKey: fd)?.stop()
            return
        }
        var events: Int32 = 0
        if what & CURL_POLL_IN != 0 { events |= Int32(EV_READ) }
        if what & CURL_POLL_OUT != 0 { events |= Int32(EV_WRITE) }
        if let watcher = sockets[fd] {
            watcher.watch(events)
        } else {
            sockets[fd] = UpstreamSocketWatcher(client: self, loop: loop, fd: fd, events: events)
        }
    }

    /// libcurl wants to be called after `milliseconds` (-1: never, 0: as soon
    /// as possible, which is the next loop turn — never from inside its callback).
    fileprivate func scheduleTimeout(_ milliseconds: Int) {
        ev_timer_stop(loop, curlTimer)
        guard milliseconds >= 0 else { return }
        sy_ev_timer_set(curlTimer, Double(milliseconds) / 1000, 0)
        ev_timer_start(loop, curlTimer)
    }

    fileprivate func socketReady(_ fd: Int32, revents: Int32) {
        guard let multi else { return }
        var flags: Int32 = 0
        if revents & Int32(EV_READ) != 0 { flags |= CURL_CSELECT_IN }
        if revents & Int32(EV_WRITE) != 0 { flags |= CURL_CSELECT_OUT }
        if revents & Int32(EV_ERROR) != 0 { flags |= CURL_CSELECT_ERR }
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, fd, flags, &running)
        completeFinished()
    }

    private func curlTimerFired() {
        guard let multi else { return }
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, SY_CURL_SOCKET_TIMEOUT, 0, &running)
        completeFinished()
    }

    /// Completes the transfers libcurl reports done, one message at a time: a
    /// completion may cancel another transfer (whose pending message libcurl
    /// then drops), start a new one, or shut the client down.
    private func completeFinished() {
        while let multi {
            var queued: Int32 = 0
            guard let message = curl_multi_info_read(multi, &queued) else { return }
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = sy_curl_msg_result(message)
            guard let transfer = transfers.removeValue(forKey: easy) else {
                curl_multi_remove_handle(multi, easy)
                continue
            }
            let result = outcome(of: transfer, easy: easy, code: code)
            curl_multi_remove_handle(multi, easy)
            // A name that failed to resolve ended its lookup; a timeout did not.
            if code == CURLE_COULDNT_RESOLVE_HOST { transfer.lookupStartedAt = nil }
            abandonLookup(of: transfer)
            transfer.releaseCurlState()
            if case .failure(let failure) = result {
                logger.debug("upstream request failed", metadata: ["request": "\(transfer.summary)", "reason": "\(failure.reason)"])
            }
            transfer.finish(result)
        }
    }

    private func outcome(of transfer: UpstreamTransfer, easy: UnsafeMutableRawPointer, code: CURLcode) -> Result<UpstreamResponse, UpstreamFailure> {
        if code == CURLE_OK {
            var status = 0
            _ = sy_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            return .success(transfer.takeResponse(status: status))
        }
        if let reason = transfer.abortReason { return .failure(reason) }
        if code == CURLE_COULDNT_CONNECT, let refusal = transfer.egressRefusal {
            return .failure(UpstreamFailure(reason: refusal))
        }
        var osErrno = 0
        _ = sy_curl_easy_getinfo_long(easy, CURLINFO_OS_ERRNO, &osErrno)
        return .failure(.from(code: code, osErrno: Int32(truncatingIfNeeded: osErrno), message: transfer.errorMessage))
    }

    /// Reports `failure` on the next loop turn (completions never run inside `perform`).
    private func failLater(_ transfer: UpstreamTransfer, _ failure: UpstreamFailure) {
        transfer.deferredFailure = failure
        deferred.append(transfer)
        if sy_ev_is_active(deferTimer) == 0 {
            sy_ev_timer_set(deferTimer, 0, 0)
            ev_timer_start(loop, deferTimer)
        }
    }

    private func completeDeferred() {
        let due = deferred
        deferred = []
        for transfer in due {
            let failure = transfer.deferredFailure ?? .shuttingDown
            logger.debug("upstream request failed", metadata: ["request": "\(transfer.summary)", "reason": "\(failure.reason)"])
            transfer.finish(.failure(failure))
        }
    }
}

/// The `ev_io` for one socket libcurl uses. Sockets are shared by transfers
/// over a reused connection, so watchers are keyed by descriptor, not by transfer.
private final class UpstreamSocketWatcher {
    unowned let client: UpstreamClient
    let fd: Int32
    private let loop: OpaquePointer
    private let io: UnsafeMutablePointer<ev_io>

    init(client: UpstreamClient, loop: OpaquePointer, fd: Int32, events: Int32) {
        self.client = client
        self.loop = loop
        self.fd = fd
        io = .allocate(capacity: 1)
        // ev_io_init marks the descriptor as new to libev: libcurl may reuse
        // the number of a socket it just closed.
        sy_ev_io_init(io, { _, w, revents in
            guard let w, let data = sy_ev_get_data(w) else { return }
            // A completion may remove this watcher (or drop the client); keep both alive until we return.
            let watcher = Unmanaged<UpstreamSocketWatcher>.fromOpaque(data).takeUnretainedValue()
            let client = watcher.client
            withExtendedLifetime((watcher, client)) { client.socketReady(watcher.fd, revents: revents) }
        }, fd, events)
        sy_ev_set_data(io, Unmanaged.passUnretained(self).toOpaque())
        if events != 0 { ev_io_start(loop, io) }
    }

    deinit {
        ev_io_stop(loop, io)
        io.deallocate()
    }

    func watch(_ events: Int32) {
        if sy_ev_is_active(io) != 0 && sy_ev_io_events(io) == events { return }
        ev_io_stop(loop, io)
        guard events != 0 else { return }
        sy_ev_io_modify(io, events)
        ev_io_start(loop, io)
    }

    func stop() { ev_io_stop(loop, io) }
}

// libcurl's C callbacks: each finds its Swift object through the context pointer.

private let upstreamSocketCallback: curl_socket_callback = { _, fd, what, clientp, _ in
    guard let clientp else { return 0 }
    Unmanaged<UpstreamClient>.fromOpaque(clientp).takeUnretainedValue().watchSocket(fd, what: what)
    return 0
}

private let upstreamTimerCallback: curl_multi_timer_callback = { _, milliseconds, clientp in
    guard let clientp else { return 0 }
    Unmanaged<UpstreamClient>.fromOpaque(clientp).takeUnretainedValue().scheduleTimeout(milliseconds)
    return 0
}

private let upstreamWriteCallback: curl_write_callback = { buffer, size, count, userdata in
    let length = size * count
    guard let userdata else { return 0 }
    let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveBody(UnsafeRawBufferPointer(start: buffer, count: length)) ? length : 0
}

private let upstreamHeaderCallback: curl_write_callback = { buffer, size, count, userdata in
    let length = size * count
    guard let userdata else { return 0 }
    let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: buffer, count: length)) ? length : 0
}

private let upstreamOpenSocketCallback: curl_opensocket_callback = { clientp, _, address in
    guard let clientp, let address else { return SY_CURL_SOCKET_BAD }
    return Unmanaged<UpstreamTransfer>.fromOpaque(clientp).takeUnretainedValue().openSocket(address)
}

private let upstreamPrereqCallback: curl_prereq_callback = { clientp, _, _, _, _ in
    if let clientp { Unmanaged<UpstreamTransfer>.fromOpaque(clientp).takeUnretainedValue().connectionReady() }
    return SY_CURL_PREREQFUNC_OK
}
