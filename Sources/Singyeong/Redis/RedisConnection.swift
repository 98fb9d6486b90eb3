import CHiredis
import CLibev
import Logging

/// One asynchronous hiredis connection on the node's libev loop, kept up:
/// connect, AUTH and SELECT, reconnect with a backoff, and detection of a
/// Redis that stopped answering. The node registry and the Redis queue store
/// each own one, so a slow queue script never delays a registry refresh.
///
/// No call here blocks the loop on Redis (except the name lookup hiredis 0.14
/// does inside `redisAsyncConnect`, which is instant for an IP address).
/// Commands sent on one connection are answered in order (Redis pipelines
/// them), which the queue store relies on: a move written after another is
/// applied after it. hiredis 0.14 has no timeouts, so a silent Redis is
/// detected here: a connect, a handshake, or the oldest unanswered command
/// that makes no progress for `stallTicks` retry ticks in a row drops the
/// connection, which answers every outstanding command with nil. Counted in
/// ticks, not elapsed time: a node that was itself paused (SIGSTOP, a VM
/// hiccup) sees one tick when it wakes up, not a stall of Redis, and reads
/// the replies waiting in its socket before the next tick.
final class RedisConnection {
    /// After the handshake (AUTH, SELECT): commands may be sent. Commands
    /// queued here go out before any the caller sends later.
    var onConnected: (() -> Void)?
    /// The connection is gone (or a connect attempt failed); every command
    /// still outstanding has been answered with nil.
    var onDisconnected: ((String) -> Void)?
    private(set) var isConnected = false

    let dsn: RedisDSN
    /// Names the user in log lines ("registry", "queues").
    let label: String
    let retryMilliseconds: Int
    let stallTicks: Int

    private let loop: EventLoop
    private var logger: Logger
    private var timer: LoopTimer?

    private enum Phase {
        case stopped
        /// Waiting for the next connect attempt (backoff).
        case disconnected
        case connecting
        /// Connected; AUTH/SELECT in flight.
        case handshaking
        case connected
    }

    private var phase: Phase = .stopped
    private var link: RedisLink?
    /// Connect attempts that failed in a row (drives the backoff).
    private var failures = 0
    /// Retry ticks still to skip before the next connect attempt.
    private var ticksUntilRetry = 0
    /// Ticks in a row without progress (a phase began, or a reply arrived)
    /// while something was awaited.
    private var stalledTicks = 0
    /// The last failure logged at warning level; repeats go to debug so a long
    /// outage logs once, not once per retry.
    private var lastFailure: String?

    /// `retryMilliseconds`: the tick of retries (1, 2, 4, then 8 ticks between
    /// attempts) and of stall checks. A stall needs at least 2 s and 5 ticks,
    /// so a short test tick does not make a busy Redis look dead.
    init(loop: EventLoop, logger: Logger, dsn: RedisDSN, label: String, retryMilliseconds: Int) {
        self.loop = loop
        self.logger = logger
        self.logger[metadataKey: "redis"] = "\(dsn)"
        self.dsn = dsn
        self.label = label
        self.retryMilliseconds = max(retryMilliseconds, 1)
        stallTicks = max(5, (2000 + self.retryMilliseconds - 1) / self.retryMilliseconds)
    }

    deinit {
        timer?.stop()
        if let link {
            link.owner = nil
            closeLink(link)
        }
    }

    /// Commands sent and not yet answered.
    var outstanding: Int { link?.outstanding ?? 0 }

    /// Connects now and keeps the connection up until `stop`.
    func start() {
        guard phase == .stopped else { return }
        if dsn.tls {
            logger.error("\(label): rediss:// is not supported by this build (hiredis 0.14 has no TLS); staying offline")
            return
        }
        phase = .disconnected
        failures = 0
        ticksUntilRetry = 0
        let timer = LoopTimer(loop: loop) { [unowned self] in self.tick() }
        self.timer = timer
        let interval = Double(retryMilliseconds) / 1000
        timer.start(after: interval, repeating: interval)
        connect()
    }

    /// While disconnected (in a backoff), tries to connect at once.
    func connectNow() {
        guard phase == .disconnected else { return }
        connect()
    }

    /// Whether a connect or handshake is under way.
    var isConnecting: Bool { phase == .connecting || phase == .handshaking }

    /// Closes the connection (outstanding commands are answered with nil) and
    /// stays closed.
    func stop() {
        timer?.stop()
        timer = nil
        let wasConnected = isConnected
        phase = .stopped
        isConnected = false
        if let link {
            self.link = nil
            closeLink(link)
        }
        if wasConnected { onDisconnected?("stopped") }
    }

    /// Gives up the current connection (e.g. the caller saw it misbehave)
    /// and reconnects under the usual backoff.
    func drop(reason: String, level: Logger.Level = .warning) {
        guard let link else { return }
        self.link = nil
        let wasConnected = phase == .connected
        isConnected = false
        closeLink(link)
        connectFailed(reason, level: level, wasConnected: wasConnected)
    }

    // MARK: - Commands

    /// Queues one command; `handler` runs exactly once: with the reply, or
    /// with nil when the connection goes away first. Returns false (and runs
    /// nothing) when there is no connection or hiredis refuses the command.
    @discardableResult
    func send(_ arguments: [String], handler: @escaping (RedisValue?) -> Void) -> Bool {
        var command = RedisCommandBuilder()
        for argument in arguments { command.add(argument) }
        return send(command, handler: handler)
    }

    @discardableResult
    func send(_ command: RedisCommandBuilder, handler: @escaping (RedisValue?) -> Void) -> Bool {
        guard let link, let context = link.context, phase == .connected || phase == .handshaking else { return false }
        if link.outstanding == 0 { stalledTicks = 0 }
        let box = Unmanaged.passRetained(RedisCommand(link: link, handler: handler))
        let status: Int32 = command.withArgv { count, argv, lengths in
            redisAsyncCommandArgv(context, { _, reply, privdata in
                guard let privdata else { return }
                let command = Unmanaged<RedisCommand>.fromOpaque(privdata).takeRetainedValue()
                let value = reply.map { RedisValue($0.assumingMemoryBound(to: redisReply.self)) }
                command.complete(value)
            }, box.toOpaque(), count, argv, lengths)
        }
        if status != REDIS_OK {
            box.release()
            return false
        }
        link.outstanding += 1
        return true
    }

    // MARK: - Connection

    private func tick() {
        switch phase {
        case .stopped:
            return
        case .disconnected:
            if ticksUntilRetry > 0 {
                ticksUntilRetry -= 1
                return
            }
            connect()
        case .connecting, .handshaking:
            stalledTicks += 1
            if stalledTicks >= stallTicks {
                drop(reason: phase == .connecting ? "connect timed out" : "no answer to AUTH/SELECT")
            }
        case .connected:
            guard outstanding > 0 else { return }
            stalledTicks += 1
            if stalledTicks >= stallTicks { drop(reason: "Redis stopped answering") }
        }
    }

    /// Opens a new hiredis context (hiredis never reuses one after a disconnect).
    private func connect() {
        phase = .connecting
        stalledTicks = 0
        guard let context = redisAsyncConnect(dsn.host, Int32(dsn.port)) else {
            connectFailed("out of memory creating the hiredis context")
            return
        }
        if context.pointee.err != 0 {
            let message = context.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            // Not attached and no callbacks will run: ours to free.
            redisAsyncFree(context)
            connectFailed(message)
            return
        }
        let link = RedisLink(owner: self, context: context)
        context.pointee.data = Unmanaged.passRetained(link).toOpaque()
        link.retained = true
        self.link = link
        if sy_redis_attach_libev(context, loop.raw) != REDIS_OK {
            self.link = nil
            closeLink(link)
            connectFailed("could not attach to the event loop")
            return
        }
        redisAsyncSetConnectCallback(context) { context, status in
            guard let context, let data = context.pointee.data else { return }
            let link = Unmanaged<RedisLink>.fromOpaque(data).takeUnretainedValue()
            if status == REDIS_OK {
                link.callbackDepth += 1
                link.owner?.linkConnected(link)
                link.callbackDepth -= 1
            } else {
                // hiredis frees the context when this returns; no disconnect callback follows.
                let message = context.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
                link.context = nil
                link.owner?.linkClosed(link, error: message)
                link.releaseRetain()
            }
        }
        redisAsyncSetDisconnectCallback(context) { context, status in
            guard let context, let data = context.pointee.data else { return }
            let link = Unmanaged<RedisLink>.fromOpaque(data).takeUnretainedValue()
            // hiredis frees the context when this returns.
            let message = status == REDIS_OK ? "connection closed" : (context.pointee.errstr.map { String(cString: $0) } ?? "connection lost")
            link.context = nil
            link.owner?.linkClosed(link, error: message)
            link.releaseRetain()
        }
    }

    /// TCP is up: authenticate and select the database before anything else.
    private func linkConnected(_ link: RedisLink) {
        guard link === self.link else { return }
        phase = .handshaking
        stalledTicks = 0
        if let password = dsn.password {
            let auth = dsn.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]
            send(auth) { [weak self] reply in
                guard let self, link === self.link else { return }
                if case .error(let message)? = reply {
                    self.drop(reason: "AUTH failed: \(message)", level: .error)
                }
            }
        }
        send(["SELECT", String(dsn.db)]) { [weak self] reply in
            guard let self, link === self.link, self.phase == .handshaking else { return }
            switch reply {
            case .error(let message)?:
                self.drop(reason: "SELECT \(self.dsn.db) failed: \(message)", level: .error)
            case nil:
                break  // the link is going away; linkClosed handles it
            default:
                self.handshakeDone()
            }
        }
    }

    private func handshakeDone() {
        phase = .connected
        stalledTicks = 0
        failures = 0
        ticksUntilRetry = 0
        lastFailure = nil
        isConnected = true
        logger.info("\(label): connected to Redis")
        onConnected?()
    }

    /// A reply arrived on `link`.
    fileprivate func progressed(_ link: RedisLink) { stalledTicks = 0 }

    fileprivate func isCurrent(_ link: RedisLink) -> Bool { link === self.link }

    /// hiredis has freed (or is freeing) `link`'s context.
    private func linkClosed(_ link: RedisLink, error: String) {
        guard link === self.link else { return }
        self.link = nil
        let wasConnected = phase == .connected
        isConnected = false
        if phase == .stopped { return }
        connectFailed(error, wasConnected: wasConnected)
    }

    /// A connect or handshake failed, or a connection was lost: back off (1,
    /// 2, 4, then 8 ticks between attempts; Redis, unlike a peer, is one
    /// server that may be overloaded; a lost connection retries at once).
    private func connectFailed(_ message: String, level: Logger.Level = .warning, wasConnected: Bool = false) {
        if wasConnected {
            failures = 1
            ticksUntilRetry = 0
        } else {
            failures += 1
            ticksUntilRetry = min(1 << min(failures - 1, 3), 8) - 1
        }
        phase = .disconnected
        if wasConnected {
            logger.warning("\(label): lost the Redis connection; retrying", metadata: ["error": "\(message)"])
            lastFailure = message
        } else if message != lastFailure {
            logger.log(level: level, "\(label): cannot use Redis, retrying", metadata: ["error": "\(message)"])
            lastFailure = message
        } else {
            logger.debug("\(label): Redis still unavailable", metadata: ["error": "\(message)", "failures": "\(failures)"])
        }
        onDisconnected?(message)
    }

    /// Frees `link`'s context, unless we are inside one of its callbacks:
    /// then hiredis is using it, so the free waits for the end of the loop turn.
    private func closeLink(_ link: RedisLink) {
        if link.callbackDepth > 0 {
            loop.runAtEndOfTurn(RedisLinkCloser(link: link))
        } else {
            link.free()
        }
    }
}

/// The arguments of one command, binary-safe, in one buffer.
struct RedisCommandBuilder {
    private var bytes: [UInt8] = []
    private var offsets: [Int] = []
    private var lengths: [Int] = []

    init() {}

    init(_ arguments: String...) {
        for argument in arguments { add(argument) }
    }

    var count: Int { offsets.count }

    mutating func add(_ argument: String) {
        offsets.append(bytes.count)
        lengths.append(argument.utf8.count)
        bytes.append(contentsOf: argument.utf8)
    }

    mutating func add(_ argument: some Collection<UInt8>) {
        offsets.append(bytes.count)
        lengths.append(argument.count)
        bytes.append(contentsOf: argument)
    }

    mutating func add(_ argument: Int64) { add(String(argument)) }

    fileprivate func withArgv<R>(_ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?) -> R) -> R {
        var bytes = self.bytes
        bytes.append(0)  // never an empty buffer, so baseAddress is never nil
        return bytes.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    body(Int32(offsets.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                }
            }
        }
    }
}

/// One hiredis async context and the connection that owns it. hiredis's
/// callbacks find it through `redisAsyncContext.data`, which holds one retain
/// released exactly once, when hiredis frees the context (or we do).
final class RedisLink {
    /// Weak: a connection that went away just stops hearing from its context.
    fileprivate weak var owner: RedisConnection?
    /// nil once hiredis freed the context (or we did).
    var context: UnsafeMutablePointer<redisAsyncContext>?
    /// The retain stored in `context.data` is still outstanding.
    var retained = false
    /// > 0 while one of this context's callbacks runs: freeing it then would
    /// pull the context out from under hiredis.
    var callbackDepth = 0
    /// Commands sent and not yet answered.
    var outstanding = 0

    fileprivate init(owner: RedisConnection, context: UnsafeMutablePointer<redisAsyncContext>) {
        self.owner = owner
        self.context = context
    }

    func releaseRetain() {
        guard retained else { return }
        retained = false
        Unmanaged.passUnretained(self).release()
    }

    /// Frees the context outside its callbacks. A connected context runs its
    /// pending reply callbacks (NULL) and the disconnect callback inside
    /// `redisAsyncFree`; one still connecting runs none, so the retain is
    /// released here in both cases (idempotently).
    func free() {
        guard let context else { return }
        withExtendedLifetime(self) {
            redisAsyncFree(context)
            self.context = nil
            releaseRetain()
        }
    }
}

/// Frees a link's context at the end of the loop turn, when no hiredis
/// callback of it can be running.
private final class RedisLinkCloser: EndOfTurnTask {
    let link: RedisLink
    init(link: RedisLink) { self.link = link }
    override func runEndOfTurn() { link.free() }
}

/// Per-command `privdata`: the reply handler, retained for hiredis and released in its callback.
private final class RedisCommand {
    let link: RedisLink
    let handler: (RedisValue?) -> Void

    init(link: RedisLink, handler: @escaping (RedisValue?) -> Void) {
        self.link = link
        self.handler = handler
    }

    /// A link already dropped answers nil even when its reply had arrived
    /// (hiredis goes on through the replies it has read).
    func complete(_ value: RedisValue?) {
        link.outstanding -= 1
        let current = link.owner?.isCurrent(link) ?? false
        if value != nil && current { link.owner?.progressed(link) }
        link.callbackDepth += 1
        handler(current ? value : nil)
        link.callbackDepth -= 1
    }
}
