import CHiredis
import CLibev
import Foundation
import Logging
import Testing
@testable import Singyeong

/// The REDIS_DSN parser (cluster.md §2.1): every part honoured, clear errors.
@Suite struct RedisDSNTests {
    @Test(arguments: [
        ("redis://127.0.0.1", RedisDSN(host: "127.0.0.1")),
        ("redis://localhost:6380", RedisDSN(host: "localhost", port: 6380)),
        ("redis://h/3", RedisDSN(host: "h", db: 3)),
        ("redis://h:1234/", RedisDSN(host: "h", port: 1234)),
        ("redis://:pw@127.0.0.1:6379/0", RedisDSN(host: "127.0.0.1", password: "pw")),
        ("redis://user:pw@h:7000/2", RedisDSN(host: "h", port: 7000, user: "user", password: "pw", db: 2)),
        ("redis://pw@h", RedisDSN(host: "h", password: "pw")),
        ("redis://@h", RedisDSN(host: "h")),
        ("redis://[::1]:6390/1", RedisDSN(host: "::1", port: 6390, db: 1)),
        ("redis://:p%40ss%3Aw%2Fd@h", RedisDSN(host: "h", password: "p@ss:w/d")),
        ("redis://us%20er:p%C3%A9@h", RedisDSN(host: "h", user: "us er", password: "pé")),
        ("redis://:p@ss@h", RedisDSN(host: "h", password: "p@ss")),
        ("REDIS://H:1", RedisDSN(host: "H", port: 1)),
        ("rediss://:pw@redis.example.com:6380", RedisDSN(host: "redis.example.com", port: 6380, password: "pw", tls: true)),
    ])
    func parsesGoodDSNs(text: String, expected: RedisDSN) throws {
        #expect(try RedisDSN(parsing: text) == expected)
    }

    @Test(arguments: [
        ("127.0.0.1:6379", "missing scheme"),
        ("http://h", "unknown scheme 'http://'"),
        ("redis://", "missing host"),
        ("redis://:pw@", "missing host"),
        ("redis://h:", "bad port ''"),
        ("redis://h:abc", "bad port 'abc'"),
        ("redis://h:0", "bad port '0'"),
        ("redis://h:65536", "bad port '65536'"),
        ("redis://h:-1", "bad port '-1'"),
        ("redis://h/x", "bad database 'x'"),
        ("redis://h/-1", "bad database '-1'"),
        ("redis://h/1/2", "bad database '1/2'"),
        ("redis://::1:6379", "must be in brackets"),
        ("redis://[::1", "unclosed '['"),
        ("redis://[::1]x", "unexpected 'x'"),
        ("redis://[h]", "not an IPv6 address"),
        ("redis://:%zz@h", "bad percent-encoding in the password"),
        ("redis://%4:pw@h", "bad percent-encoding in the user name"),
        ("redis://user:@h", "without a password"),
        ("redis://h/0?timeout=1", "query parameters"),
    ])
    func rejectsBadDSNs(text: String, problem: String) {
        do {
            let dsn = try RedisDSN(parsing: text)
            Issue.record("\(text) parsed as \(dsn)")
        } catch {
            let message = "\(error)"
            #expect(message.hasPrefix("REDIS_DSN: "), "\(message)")
            #expect(message.contains(problem), "\(text): \(message)")
        }
    }

    @Test func descriptionHidesThePassword() throws {
        let dsn = try RedisDSN(parsing: "redis://u:secret@[::1]:7/2")
        #expect(dsn.description == "redis://u:***@[::1]:7/2")
        do {
            _ = try RedisDSN(parsing: "ftp://u:secret@h")
        } catch {
            #expect(!"\(error)".contains("secret"))
        }
    }
}

/// The registry against a real redis-server started on a free port.
/// Serialized: every test drives the process's one libev default loop.
@Suite(.serialized) struct RedisRegistryTests {
    init() {
        // A write to a Redis that was just killed must not kill the test process.
        signal(SIGPIPE, SIG_IGN)
    }

    @Test func twoNodesSeeEachOther() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        let a = TestNode(id: "a", port: server.port)
        let b = TestNode(id: "b", port: server.port)
        defer { a.registry.stop(); b.registry.stop(); drive(seconds: 0.05) }
        a.registry.start()
        b.registry.start()
        #expect(drive(seconds: 5) { a.members == ["b": "addr-b"] && b.members == ["a": "addr-a"] })
        #expect(a.registry.isConnected && b.registry.isConnected)
        #expect(a.states == [true] && b.states == [true])
        #expect(try server.command(["HGET", "singyeong:cluster:registry:test", "a"]) == .string(Array("addr-a".utf8)))
        #expect(try server.command(["GET", "singyeong:cluster:node:test:b"]) == .string(Array("addr-b".utf8)))
        let ttl = try server.command(["PTTL", "singyeong:cluster:node:test:a"])
        if case .integer(let ms) = ttl { #expect(ms > 0 && ms <= 300) } else { Issue.record("PTTL: \(ttl)") }
    }

    @Test func aNodeThatStopsTickingIsRemovedWhenItsKeyExpires() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        let a = TestNode(id: "a", port: server.port)
        let b = TestNode(id: "b", port: server.port)
        defer { b.registry.stop(); drive(seconds: 0.05) }
        a.registry.start()
        b.registry.start()
        #expect(drive(seconds: 5) { b.members == ["a": "addr-a"] })
        // A "crashes": it stops refreshing but never deregisters.
        a.registry.stop()
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "a"]) == .integer(1))
        #expect(drive(seconds: 3) { b.members == [:] })
        // The HDEL went out with that round; let the loop write it.
        #expect(drive(seconds: 1) { (try? server.command(["HEXISTS", "singyeong:cluster:registry:test", "a"])) == .integer(0) })
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "b"]) == .integer(1))
    }

    @Test func removeDeletesTheEntry() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        // A live-looking member that does not tick itself (its key outlives the test).
        _ = try server.command(["SET", "singyeong:cluster:node:test:ghost", "addr-ghost", "EX", "60"])
        _ = try server.command(["HSET", "singyeong:cluster:registry:test", "ghost", "addr-ghost"])
        let b = TestNode(id: "b", port: server.port)
        defer { b.registry.stop(); drive(seconds: 0.05) }
        b.registry.start()
        #expect(drive(seconds: 5) { b.members == ["ghost": "addr-ghost"] })
        b.registry.remove(nodeID: "ghost")
        #expect(drive(seconds: 2) { (try? server.command(["HEXISTS", "singyeong:cluster:registry:test", "ghost"])) == .integer(0) })
        #expect(drive(seconds: 2) { b.members == [:] })
        // Removing oneself is ignored: the node stays registered.
        b.registry.remove(nodeID: "b")
        drive(seconds: 0.3)
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "b"]) == .integer(1))
    }

    @Test func deregisterRemovesSelf() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        let a = TestNode(id: "a", port: server.port)
        a.registry.start()
        #expect(drive(seconds: 5) { a.registry.isConnected })
        #expect(drive(seconds: 2) { (try? server.command(["HEXISTS", "singyeong:cluster:registry:test", "a"])) == .integer(1) })
        var done = false
        let started = monotonicNow()
        a.registry.deregister(timeout: 2) { done = true }
        #expect(drive(seconds: 3) { done })
        #expect(monotonicNow() - started < 1.5)
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "a"]) == .integer(0))
        #expect(try server.command(["EXISTS", "singyeong:cluster:node:test:a"]) == .integer(0))
        #expect(!a.registry.isConnected)
        // No tick puts it back.
        drive(seconds: 0.4)
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "a"]) == .integer(0))
    }

    @Test func deregisterFinishesWhenRedisIsDown() throws {
        let port = try freePort()
        let a = TestNode(id: "a", port: port)
        a.registry.start()
        drive(seconds: 0.3)
        #expect(!a.registry.isConnected)
        var done = false
        let started = monotonicNow()
        a.registry.deregister(timeout: 0.5) { done = true }
        #expect(drive(seconds: 2) { done })
        #expect(monotonicNow() - started < 1)
    }

    @Test func passwordFromTheDSN() throws {
        let server = try RedisTestServer(arguments: ["--requirepass", "s3cr@t"])
        defer { server.kill() }
        let good = TestNode(id: "good", dsn: "redis://:s3cr%40t@127.0.0.1:\(server.port)")
        let user = TestNode(id: "user", dsn: "redis://default:s3cr%40t@127.0.0.1:\(server.port)")
        let bad = TestNode(id: "bad", dsn: "redis://:wrong@127.0.0.1:\(server.port)")
        let none = TestNode(id: "none", dsn: "redis://127.0.0.1:\(server.port)")
        defer { for node in [good, user, bad, none] { node.registry.stop() }; drive(seconds: 0.05) }
        for node in [good, user, bad, none] { node.registry.start() }
        #expect(drive(seconds: 5) { good.members == ["user": "addr-user"] && user.members == ["good": "addr-good"] })
        drive(seconds: 0.5)
        #expect(good.registry.isConnected && user.registry.isConnected)
        #expect(!bad.registry.isConnected && bad.states.isEmpty && bad.members == nil)
        #expect(!none.registry.isConnected && none.states.isEmpty)
        #expect(bad.log.contains { $0.level == .error && $0.message.contains("AUTH failed") && $0.message.contains("WRONGPASS") })
        #expect(none.log.contains { $0.level == .error && $0.message.contains("NOAUTH") })
        // Retries are logged once, not every tick.
        #expect(bad.log.filter { $0.level >= .warning }.count == 1)
        // The password never reaches the log.
        #expect(!bad.log.contains { $0.message.contains("wrong") })
        let hash = try server.command(["HKEYS", "singyeong:cluster:registry:test"], password: "s3cr@t")
        #expect(Set(hash.arrayTexts) == ["good", "user"])
    }

    @Test func reconnectsAndReregistersAfterRedisRestarts() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        let a = TestNode(id: "a", port: server.port)
        defer { a.registry.stop(); drive(seconds: 0.05) }
        a.registry.start()
        #expect(drive(seconds: 5) { a.registry.isConnected && a.members == [:] })
        _ = try server.command(["SET", "singyeong:cluster:node:test:z", "addr-z", "EX", "60"])
        _ = try server.command(["HSET", "singyeong:cluster:registry:test", "z", "addr-z"])
        #expect(drive(seconds: 2) { a.members == ["z": "addr-z"] })

        server.kill()
        #expect(drive(seconds: 3) { !a.registry.isConnected })
        #expect(a.states == [true, false])
        // Keep trying for a while (the backoff grows) without losing the last members.
        drive(seconds: 1.5)
        #expect(a.members == ["z": "addr-z"])
        #expect(a.log.filter { $0.level >= .warning }.count <= 2)

        let restarted = try RedisTestServer(port: server.port)
        defer { restarted.kill() }
        #expect(drive(seconds: 5) { (try? restarted.command(["HGET", "singyeong:cluster:registry:test", "a"])) == .string(Array("addr-a".utf8)) })
        #expect(a.registry.isConnected)
        #expect(a.states == [true, false, true])
        #expect(drive(seconds: 2) { a.members == [:] })
    }

    @Test func selectsTheDatabaseFromTheDSN() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        let a = TestNode(id: "a", dsn: "redis://127.0.0.1:\(server.port)/3")
        defer { a.registry.stop(); drive(seconds: 0.05) }
        a.registry.start()
        #expect(drive(seconds: 5) { a.members == [:] })
        #expect(try server.command(["HGET", "singyeong:cluster:registry:test", "a"], db: 3) == .string(Array("addr-a".utf8)))
        #expect(try server.command(["EXISTS", "singyeong:cluster:node:test:a"], db: 3) == .integer(1))
        #expect(try server.command(["EXISTS", "singyeong:cluster:registry:test"], db: 0) == .integer(0))
    }

    @Test func aBadDatabaseIsReportedAndRetried() throws {
        let server = try RedisTestServer(arguments: ["--databases", "4"])
        defer { server.kill() }
        let a = TestNode(id: "a", dsn: "redis://127.0.0.1:\(server.port)/9")
        defer { a.registry.stop(); drive(seconds: 0.05) }
        a.registry.start()
        drive(seconds: 0.5)
        #expect(!a.registry.isConnected && a.states.isEmpty)
        #expect(a.log.contains { $0.level == .error && $0.message.contains("SELECT 9 failed") })
    }

    @Test func stoppingOrReleasingFromInsideACallbackIsSafe() throws {
        let server = try RedisTestServer()
        defer { server.kill() }
        // stop() from onMembers: the context must be freed after hiredis's callback returns.
        let a = TestNode(id: "a", port: server.port)
        var calls = 0
        a.registry.onMembers = { [unowned a] _ in calls += 1; a.registry.stop() }
        a.registry.start()
        #expect(drive(seconds: 3) { calls == 1 })
        drive(seconds: 0.3)
        #expect(calls == 1 && !a.registry.isConnected)
        // The last reference dropped from inside onMembers.
        var b: RedisRegistry? = RedisRegistry(loop: testLoop, logger: Logger(label: "test.b"), dsn: try RedisDSN(parsing: "redis://127.0.0.1:\(server.port)"),
                                              group: "test", nodeID: "b", advertise: "addr-b", tickMilliseconds: 100)
        b?.onMembers = { _ in b = nil }
        b?.start()
        #expect(drive(seconds: 3) { b == nil })
        drive(seconds: 0.3)
        // Deregistration whose completion stops the registry again (as Cluster does).
        let c = TestNode(id: "c", port: server.port)
        c.registry.start()
        #expect(drive(seconds: 3) { c.registry.isConnected })
        var done = false
        c.registry.deregister(timeout: 1) { [unowned c] in c.registry.stop(); done = true }
        #expect(drive(seconds: 2) { done })
        drive(seconds: 0.1)
        #expect(try server.command(["HEXISTS", "singyeong:cluster:registry:test", "c"]) == .integer(0))
    }

    @Test func rejectsTLS() throws {
        let a = TestNode(id: "a", dsn: "rediss://127.0.0.1:1")
        a.registry.start()
        drive(seconds: 0.2)
        #expect(!a.registry.isConnected)
        #expect(a.log.contains { $0.level == .error && $0.message.contains("rediss:// is not supported by this build") })
    }
}

// MARK: - Helpers

/// The one loop all registry tests share: `EventLoop` wraps libev's default
/// loop, and its prepare watcher must stay valid for the whole process.
private let testLoop = EventLoop()

private func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs the loop one turn at a time until `condition` holds or `seconds`
/// pass (a 10 ms wake-up timer keeps each turn short). Returns whether it held.
@discardableResult
private func drive(seconds: Double, until condition: () -> Bool = { false }) -> Bool {
    let wake = LoopTimer(loop: testLoop) {}
    wake.start(after: 0.01, repeating: 0.01)
    defer { wake.stop() }
    let deadline = monotonicNow() + seconds
    while monotonicNow() < deadline {
        if condition() { return true }
        ev_run(testLoop.raw, Int32(EVRUN_ONCE))
    }
    return condition()
}

/// One registry plus everything it reported.
private final class TestNode {
    let registry: RedisRegistry
    let log = LogRecorder()
    var members: [String: String]?
    var states: [Bool] = []

    convenience init(id: String, port: Int) {
        self.init(id: id, dsn: "redis://127.0.0.1:\(port)")
    }

    init(id: String, dsn: String) {
        let recorder = log
        var logger = Logger(label: "test.\(id)") { _ in RecordingLogHandler(recorder: recorder) }
        logger.logLevel = .debug
        registry = RedisRegistry(loop: testLoop, logger: logger, dsn: try! RedisDSN(parsing: dsn), group: "test",
                                 nodeID: id, advertise: "addr-\(id)", tickMilliseconds: 100)
        registry.onMembers = { [unowned self] in self.members = $0 }
        registry.onStateChange = { [unowned self] in self.states.append($0) }
    }
}

/// Log lines a registry wrote (message with its metadata flattened in).
private final class LogRecorder: @unchecked Sendable {
    struct Line {
        let level: Logger.Level
        let message: String
    }

    private let lock = NSLock()
    private var lines: [Line] = []

    func append(_ line: Line) { lock.withLock { lines.append(line) } }
    func contains(where predicate: (Line) -> Bool) -> Bool { lock.withLock { lines.contains(where: predicate) } }
    func filter(_ predicate: (Line) -> Bool) -> [Line] { lock.withLock { lines.filter(predicate) } }
}

private struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let text = "\(event.message) " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        recorder.append(.init(level: event.level, message: text))
    }
}

/// A port nothing listens on right now.
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw TestFailure("bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A throw-away redis-server (no persistence) and a blocking hiredis client
/// to inspect it.
private final class RedisTestServer {
    let port: Int
    private let process = Process()
    private var killed = false

    init(port: Int? = nil, arguments: [String] = []) throws {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/redis-server" } + ["/usr/bin/redis-server"]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestFailure("redis-server not found on PATH or at /usr/bin/redis-server: run `make deps` (installs redis-server) to run the registry tests")
        }
        self.port = try port ?? freePort()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--loglevel", "warning"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready once it answers anything (NOAUTH counts).
        let deadline = monotonicNow() + 10
        while monotonicNow() < deadline {
            if let _ = try? rawCommand(["PING"], password: nil, db: 0) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        kill()
        throw TestFailure("redis-server on port \(self.port) did not start")
    }

    /// SIGKILL, like a crash; waits for the process so the port is free again.
    func kill() {
        guard !killed else { return }
        killed = true
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// One command on a fresh blocking connection (AUTH/SELECT first when asked).
    func command(_ arguments: [String], password: String? = nil, db: Int = 0) throws -> RedisValue {
        try rawCommand(arguments, password: password, db: db)
    }

    private func rawCommand(_ arguments: [String], password: String?, db: Int) throws -> RedisValue {
        guard let context = redisConnectWithTimeout("127.0.0.1", Int32(port), timeval(tv_sec: 1, tv_usec: 0)) else {
            throw TestFailure("redisConnect: out of memory")
        }
        defer { redisFree(context) }
        if context.pointee.err != 0 { throw TestFailure("connect: \(Self.errorText(context))") }
        if let password { _ = try Self.run(context, ["AUTH", password]) }
        if db != 0 { _ = try Self.run(context, ["SELECT", String(db)]) }
        return try Self.run(context, arguments)
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private static func run(_ context: UnsafeMutablePointer<redisContext>, _ arguments: [String]) throws -> RedisValue {
        var cStrings = arguments.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let lengths = arguments.map { $0.utf8.count }
        let reply = cStrings.withUnsafeMutableBufferPointer { argv in
            argv.withMemoryRebound(to: UnsafePointer<CChar>?.self) { argv in
                redisCommandArgv(context, Int32(arguments.count), argv.baseAddress, lengths)
            }
        }
        guard let reply else { throw TestFailure("redisCommandArgv failed: \(Self.errorText(context))") }
        defer { freeReplyObject(reply) }
        return RedisValue(reply.assumingMemoryBound(to: redisReply.self))
    }
}

private extension RedisValue {
    /// The texts of an array reply (empty for anything else).
    var arrayTexts: [String] {
        guard case .array(let items) = self else { return [] }
        return items.compactMap(\.text)
    }
}
