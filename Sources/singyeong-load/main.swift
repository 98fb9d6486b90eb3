// singyeong-load: a load generator for the gateway (SEND / BROADCAST
// throughput and latency). One thread, non-blocking sockets and poll(2):
// small enough to read, fast enough not to be the bottleneck on loopback.
//
//   singyeong-load --port 4000 --mode send --senders 4 --receivers 8 --messages 200000
//
// Receivers identify in application "load-recv" with metadata role=sink,
// senders in "load-send"; --population adds idle clients to "load-recv"
// with role=idle. Each SEND targets application "load-recv" with
// `/role $eq "sink"` (one random receiver); each
// BROADCAST reaches every receiver. The payload carries the send time, so
// receivers measure end-to-end latency. In-flight messages are bounded
// (--window per sender) so latency reflects the server, not a flooded queue.
//
// --target gte switches the target to `/idx $gte 0` (an op the string index
// cannot narrow; receivers then also carry integer metadata idx=i, and the
// --population clients idx=-1, so the query evaluates and rejects them;
// no effect under --protocol nats, which routes by subject).
// --rate N sends N messages/s in total, spread over the senders, instead of
// as fast as the window allows (no window), and adds p999 to the latencies.
// --protocol nats speaks the NATS text protocol to a nats-server instead:
// SEND receivers are one queue group on `load.send` (one of N gets each
// message), BROADCAST receivers plain subscribers on `load.bcast`, each
// --population client an idle connection subscribed to `idle.<i>`. The
// payload then carries the sender's index (`"nonce":s`) itself and is padded
// to the same size; everything else (window, timing, parsing) is shared.
// --mode queue (gateway only): see `queueMode` below.
// --protocol redis --mode queue is the reference for queues: the same
// workload done directly on a Redis with Streams (`--port` is Redis's):
// senders XADD to stream "load-s", each receiver keeps one XREADGROUP
// COUNT 1 BLOCK 0 outstanding in group "g" and answers every message with
// XACK and a new XREADGROUP, pipelined together as QUEUE_ACK and
// QUEUE_REQUEST are.
import CSystem
import Foundation
import Glibc

struct Options {
    var host = "127.0.0.1"
    var port = 4000
    var mode = "send"
    var senders = 4
    var receivers = 8
    var messages = 100_000
    var payloadBytes = 64
    var window = 256
    var encoding = "json"
    /// Extra idle clients in the receivers' application that the query
    /// must evaluate and reject (measures per-client evaluation cost).
    var population = 0
    /// Port of the node the receivers (and bystanders) connect to; default
    /// `port`. A different node measures cross-node routing.
    var receiverPort: Int?
    /// "gateway" (the node's WebSocket gateway, JSON), "nats" or "redis".
    var wire = "gateway"
    /// "eq" (`/role $eq "sink"`, indexable) or "gte" (`/idx $gte 0`).
    var target = "eq"
    /// Total messages/s across senders (0: as fast as the window allows).
    var rate = 0

    init(_ args: [String]) {
        var i = 1
        func next() -> String { i += 1; return i < args.count ? args[i] : "" }
        while i < args.count {
            switch args[i] {
            case "--host": host = next()
            case "--port": port = Int(next()) ?? port
            case "--mode": mode = next()
            case "--senders": senders = Int(next()) ?? senders
            case "--receivers": receivers = Int(next()) ?? receivers
            case "--messages": messages = Int(next()) ?? messages
            case "--payload-bytes": payloadBytes = Int(next()) ?? payloadBytes
            case "--window": window = Int(next()) ?? window
            case "--population": population = Int(next()) ?? population
            case "--receiver-port": receiverPort = Int(next())
            case "--protocol": wire = next()
            case "--target": target = next()
            case "--rate": rate = Int(next()) ?? rate
            default:
                FileHandle.standardError.write("unknown argument \(args[i])\n".data(using: .utf8)!)
                exit(2)
            }
            i += 1
        }
        guard wire == "gateway" || wire == "nats" || wire == "redis", target == "eq" || target == "gte",
              (mode == "send" || mode == "broadcast") && wire != "redis" || (mode == "queue" && wire != "nats") else {
            FileHandle.standardError.write("--protocol gateway|nats|redis, --target eq|gte, --mode send|broadcast|queue (queue: gateway or redis; redis: queue only)\n".data(using: .utf8)!)
            exit(2)
        }
    }
}

func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// One client connection: buffered writes, frame parsing of server output.
final class LoadClient {
    let fd: Int32
    /// Speaks the NATS text protocol instead of the gateway's WebSocket.
    let nats: Bool
    /// Speaks RESP to a Redis instead.
    let redis: Bool
    var inbox: [UInt8] = []
    var outbox: [UInt8] = []
    var ready = false
    var received = 0

    init(host: String, port: Int, nats: Bool = false, redis: Bool = false) {
        self.nats = nats
        self.redis = redis
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { perror("connect"); exit(1) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        if redis {
            ready = true
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            return
        }
        if nats {
            // The server speaks first: one INFO line. Read it (at set-up,
            // blocking), keep anything after it, then send CONNECT.
            var chunk = [UInt8](repeating: 0, count: 4096)
            while inbox.firstRange(of: [13, 10]) == nil {
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { fputs("no INFO from nats-server\n", stderr); exit(1) }
                inbox.append(contentsOf: chunk[0..<n])
            }
            inbox.removeFirst(inbox.firstRange(of: [13, 10])!.upperBound)
            raw("CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            return
        }
        let request = "GET /gateway/websocket?encoding=json HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        _ = request.withCString { write(fd, $0, strlen($0)) }
        // Read the 101 head synchronously (once, at set-up).
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !(head.count >= 4 && head[(head.count - 4)...] == [13, 10, 13, 10]) {
            if read(fd, &byte, 1) != 1 { fputs("upgrade failed\n", stderr); exit(1) }
            head.append(byte)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Queues a masked text frame (mask key 0: the payload bytes stay as they are).
    func queue(_ payload: [UInt8]) {
        frameHeader(payload.count)
        outbox.append(contentsOf: payload)
    }

    /// Queues the head of a masked text frame of `n` payload bytes (mask
    /// key 0); the caller appends exactly `n` bytes after it.
    func frameHeader(_ n: Int) {
        outbox.append(0x81)
        if n < 126 { outbox.append(0x80 | UInt8(n)) }
        else if n <= 0xFFFF { outbox.append(0x80 | 126); outbox.append(UInt8(n >> 8)); outbox.append(UInt8(n & 0xFF)) }
        else { outbox.append(0x80 | 127); for s in stride(from: 56, through: 0, by: -8) { outbox.append(UInt8((n >> s) & 0xFF)) } }
        outbox.append(contentsOf: LoadClient.zeroMask)
    }

    static let zeroMask: [UInt8] = [0, 0, 0, 0]

    /// Queues protocol text as it is (NATS).
    func raw(_ text: String) { outbox.append(contentsOf: text.utf8) }

    /// Queues one Redis command (RESP array of bulk strings).
    func command(_ arguments: [[UInt8]]) {
        outbox.append(contentsOf: respCommand(arguments))
    }

    /// Queues one RESP bulk string (`$<n>\r\n<bytes>\r\n`) without
    /// building a String: the per-message commands are a constant head
    /// (`respCommand` of their fixed arguments, with the array count of the
    /// whole command) followed by their variable arguments as bulks.
    func bulk<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        outbox.append(UInt8(ascii: "$"))
        appendDecimal(UInt64(bytes.count), to: &outbox)
        outbox.append(13); outbox.append(10)
        outbox.append(contentsOf: bytes)
        outbox.append(13); outbox.append(10)
    }

    /// Reads what is available; for each complete reply, calls `onReply`
    /// with its bulk strings in order (an XREADGROUP message: stream, id,
    /// field, value). An error reply is fatal.
    func pumpRESP(_ onReply: ([ArraySlice<UInt8>]) -> Void) {
        readAvailable()
        var offset = 0
        while offset < inbox.count {
            var bulks: [ArraySlice<UInt8>] = []
            guard let end = parseRESP(at: offset, into: &bulks) else { break }
            onReply(bulks)
            offset = end
        }
        if offset > 0 { inbox.removeFirst(offset) }
    }

    /// One RESP value at `at`: its end, or nil when incomplete.
    private func parseRESP(at: Int, into bulks: inout [ArraySlice<UInt8>]) -> Int? {
        var eol = at
        while eol + 1 < inbox.count && !(inbox[eol] == 13 && inbox[eol + 1] == 10) { eol += 1 }
        guard eol + 1 < inbox.count else { return nil }
        let kind = inbox[at]
        var n = 0
        var negative = false
        for k in (at + 1)..<eol {
            if inbox[k] == UInt8(ascii: "-") { negative = true } else { n = n * 10 + Int(inbox[k] - 48) }
        }
        switch kind {
        case UInt8(ascii: "$"):
            if negative { return eol + 2 }
            guard inbox.count >= eol + 2 + n + 2 else { return nil }
            bulks.append(inbox[(eol + 2)..<(eol + 2 + n)])
            return eol + 2 + n + 2
        case UInt8(ascii: "*"):
            var next = eol + 2
            if negative { return next }
            for _ in 0..<n {
                guard let end = parseRESP(at: next, into: &bulks) else { return nil }
                next = end
            }
            return next
        case UInt8(ascii: "-"):
            fputs("redis: \(String(decoding: inbox[at..<eol], as: UTF8.self))\n", stderr)
            exit(1)
        default:
            return eol + 2
        }
    }

    /// Reads what poll said is there. A read that does not fill the buffer
    /// took everything the socket had, so it is not followed by a second
    /// read that would only answer EAGAIN (one syscall per wake-up, as a
    /// level-triggered event loop does).
    private func readAvailable() {
        while true {
            let n = LoadClient.readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            LoadClient.readBuffer.withUnsafeBytes { inbox.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            if n < LoadClient.readBuffer.count { break }
        }
    }

    private var outboxSent = 0

    func flush() {
        while outboxSent < outbox.count {
            let n = outbox.withUnsafeBytes { write(fd, $0.baseAddress! + outboxSent, $0.count - outboxSent) }
            if n <= 0 { break }
            outboxSent += n
        }
        if outboxSent == outbox.count {
            outbox.removeAll(keepingCapacity: true)
            outboxSent = 0
        }
    }

    /// Shared read buffer (one thread).
    static var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    /// Reads what is available and calls `onText` for each text frame
    /// (NATS: for each MSG payload).
    func pump(_ onText: (ArraySlice<UInt8>) -> Void) {
        if redis { pumpRESP { _ in }; return }
        readAvailable()
        if nats { pumpNATS(onText); return }
        var offset = 0
        while inbox.count - offset >= 2 {
            var length = Int(inbox[offset + 1] & 0x7F)
            var header = 2
            if length == 126 {
                guard inbox.count - offset >= 4 else { break }
                length = Int(inbox[offset + 2]) << 8 | Int(inbox[offset + 3]); header = 4
            } else if length == 127 {
                guard inbox.count - offset >= 10 else { break }
                length = 0; for k in 0..<8 { length = length << 8 | Int(inbox[offset + 2 + k]) }; header = 10
            }
            guard inbox.count - offset >= header + length else { break }
            if inbox[offset] & 0x0F == 1 { onText(inbox[(offset + header)..<(offset + header + length)]) }
            offset += header + length
        }
        if offset > 0 { inbox.removeFirst(offset) }
    }

    /// NATS server output: `MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n`,
    /// PING (answered with PONG), PONG (marks the client ready: the server
    /// has processed everything sent before our PING), +OK, INFO; -ERR is fatal.
    private func pumpNATS(_ onMessage: (ArraySlice<UInt8>) -> Void) {
        var offset = 0
        let count = inbox.count
        while true {
            // The end of the control line.
            var eol = offset
            while eol + 1 < count && !(inbox[eol] == 13 && inbox[eol + 1] == 10) { eol += 1 }
            guard eol + 1 < count else { break }
            let first = inbox[offset]
            if first == UInt8(ascii: "M") {
                // The byte count is the line's last token.
                var start = eol
                while start > offset && inbox[start - 1] >= 48 && inbox[start - 1] <= 57 { start -= 1 }
                var length = 0
                for k in start..<eol { length = length * 10 + Int(inbox[k] - 48) }
                let payload = eol + 2
                guard count - payload >= length + 2 else { break }
                onMessage(inbox[payload..<(payload + length)])
                offset = payload + length + 2
                continue
            }
            if first == UInt8(ascii: "P") && eol - offset == 4 {
                if inbox[offset + 1] == UInt8(ascii: "I") { raw("PONG\r\n"); flush() } else { ready = true }
            } else if first == UInt8(ascii: "-") {
                fputs("nats-server: \(String(decoding: inbox[offset..<eol], as: UTF8.self))\n", stderr)
                exit(1)
            }
            offset = eol + 2
        }
        if offset > 0 { inbox.removeFirst(offset) }
    }
}

let t0Marker: [UInt8] = Array("\"t0\":".utf8)
let nonceMarker: [UInt8] = Array("\"nonce\":".utf8)

/// RESP for a command whose arguments are all known (set-up, and the
/// constant heads of per-message commands; `count` overrides the array
/// length when more arguments follow as `bulk`s).
func respCommand(_ arguments: [[UInt8]], count: Int? = nil) -> [UInt8] {
    var out = Array("*\(count ?? arguments.count)\r\n".utf8)
    for a in arguments { out += Array("$\(a.count)\r\n".utf8) + a + [13, 10] }
    return out
}

/// Appends `value` in decimal (no String on the per-message path).
func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    withUnsafeMutableBytes(of: &digits) { d in
        var v = value
        var i = d.count
        repeat { i -= 1; d[i] = 48 + UInt8(v % 10); v /= 10 } while v > 0
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: d[i...]))
    }
}

/// Where `marker` (not empty) starts in `bytes`: memchr for its first
/// byte, memcmp for the rest (the generic `firstRange` was the load
/// tool's largest user-space cost; Glibc's module does not export memmem).
func offset(of marker: [UInt8], in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    guard let base = bytes.baseAddress, bytes.count >= marker.count else { return nil }
    return marker.withUnsafeBytes { m -> Int? in
        let first = Int32(m[0])
        var i = 0
        let last = bytes.count - m.count
        while i <= last {
            guard let hit = memchr(base + i, first, last - i + 1) else { return nil }
            i = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
            if memcmp(base + i, m.baseAddress!, m.count) == 0 { return i }
            i += 1
        }
        return nil
    }
}

/// The unsigned integer after `marker` in `frame`, if the marker occurs.
func number(after marker: [UInt8], in frame: ArraySlice<UInt8>) -> UInt64? {
    frame.withUnsafeBufferPointer { bytes -> UInt64? in
        guard let at = offset(of: marker, in: bytes) else { return nil }
        var value: UInt64 = 0
        var j = at + marker.count
        while j < bytes.count, bytes[j] >= 48, bytes[j] <= 57 { value = value * 10 + UInt64(bytes[j] - 48); j += 1 }
        return value
    }
}

/// Finds `"t0":<digits>` in a delivered payload.
func sendTime(in frame: ArraySlice<UInt8>) -> UInt64? { number(after: t0Marker, in: frame) }

let options = Options(CommandLine.arguments)
let nats = options.wire == "nats"
let redis = options.wire == "redis"
if redis {
    // A fresh stream and consumer group, before anyone reads.
    let setup = LoadClient(host: options.host, port: options.port, redis: true)
    setup.command([Array("DEL".utf8), Array("load-s".utf8)])
    setup.command(["XGROUP", "CREATE", "load-s", "g", "$", "MKSTREAM"].map { Array($0.utf8) })
    setup.flush()
    var replies = 0
    while replies < 2 {
        usleep(1000)
        setup.pumpRESP { _ in replies += 1 }
    }
}
let gte = options.target == "gte"
let subject = options.mode == "broadcast" ? "load.bcast" : "load.send"
var receivers: [LoadClient] = []
var senders: [LoadClient] = []
for i in 0..<options.receivers {
    let c = LoadClient(host: options.host, port: options.receiverPort ?? options.port, nats: nats, redis: redis)
    if redis {
        // Asked below, with the gateway's first QUEUE_REQUESTs.
    } else if nats {
        c.raw(options.mode == "broadcast" ? "SUB \(subject) 1\r\nPING\r\n" : "SUB \(subject) load-recv 1\r\nPING\r\n")
    } else {
        let idx = gte ? ",\"idx\":{\"type\":\"integer\",\"value\":\(i)}" : ""
        c.queue(Array("{\"op\":1,\"d\":{\"client_id\":\"r\(i)\",\"application_id\":\"load-recv\",\"metadata\":{\"role\":{\"type\":\"string\",\"value\":\"sink\"}\(idx)}}}".utf8))
    }
    receivers.append(c)
}
var bystanders: [LoadClient] = []
for i in 0..<options.population {
    let c = LoadClient(host: options.host, port: options.receiverPort ?? options.port, nats: nats)
    if nats {
        c.raw("SUB idle.\(i) 1\r\nPING\r\n")
    } else {
        let idx = gte ? ",\"idx\":{\"type\":\"integer\",\"value\":-1}" : ""
        c.queue(Array("{\"op\":1,\"d\":{\"client_id\":\"p\(i)\",\"application_id\":\"load-recv\",\"metadata\":{\"role\":{\"type\":\"string\",\"value\":\"idle\"}\(idx)}}}".utf8))
    }
    c.flush()
    bystanders.append(c)
}
for i in 0..<options.senders {
    let c = LoadClient(host: options.host, port: options.port, nats: nats, redis: redis)
    if redis {
        // Nothing to set up.
    } else if nats {
        c.raw("PING\r\n")
    } else {
        c.queue(Array("{\"op\":1,\"d\":{\"client_id\":\"s\(i)\",\"application_id\":\"load-send\"}}".utf8))
    }
    senders.append(c)
}
let all = receivers + senders + bystanders
// Wait for READY everywhere (NATS: the PONG after the SUBs).
while all.contains(where: { !$0.ready }) {
    for c in all {
        c.flush()
        c.pump { frame in if frame.firstRange(of: Array("\"op\":2,".utf8)) != nil { c.ready = true } }
    }
    usleep(1000)
}

let fanout = options.mode == "broadcast" ? options.receivers : 1
// --mode queue: senders QUEUE into "load-q" (target as for SEND); each
// receiver keeps one QUEUE_REQUEST outstanding and answers every delivery
// with QUEUE_ACK and a new QUEUE_REQUEST (queues.md: one delivery per
// request), so produce → deliver → ack is measured end to end.
let queueMode = options.mode == "queue"
let queueRequest = Array("{\"op\":4,\"t\":\"QUEUE_REQUEST\",\"d\":{\"queue\":\"load-q\"}}".utf8)
let ackPrefix = Array("{\"op\":4,\"t\":\"QUEUE_ACK\",\"d\":{\"queue\":\"load-q\",\"id\":\"".utf8)
let ackSuffix = Array("\"}}".utf8)
let idMarker = Array("\"id\":\"".utf8)
/// XREADGROUP for receiver `i` (its consumer name), as RESP.
let streamReads = (0..<options.receivers).map { i in
    respCommand(["XREADGROUP", "GROUP", "g", "c\(i)", "COUNT", "1", "BLOCK", "0", "STREAMS", "load-s", ">"].map { Array($0.utf8) })
}
/// XACK load-s g <id>, without the id; XADD load-s * m <payload>, without the payload.
let streamAckHead = respCommand(["XACK", "load-s", "g"].map { Array($0.utf8) }, count: 4)
let streamAddHead = respCommand(["XADD", "load-s", "*", "m"].map { Array($0.utf8) }, count: 5)
if queueMode {
    for (i, r) in receivers.enumerated() {
        if redis { r.outbox.append(contentsOf: streamReads[i]) } else { r.queue(queueRequest) }
        r.flush()
    }
}
let padding = String(repeating: "x", count: max(0, options.payloadBytes - 30))
let event = options.mode == "broadcast" ? "BROADCAST" : queueMode ? "QUEUE" : "SEND"
let ops = gte ? "{\"path\":\"/idx\",\"op\":\"$gte\",\"to\":{\"value\":0}}"
              : "{\"path\":\"/role\",\"op\":\"$eq\",\"to\":{\"value\":\"sink\"}}"
// NATS: the nonce moves into the payload; the padding shrinks by as much.
let prefixes = (0..<options.senders).map { s in
    nats || redis ? Array("{\"nonce\":\(s),\"t0\":".utf8)
         : Array("{\"op\":4,\"t\":\"\(event)\",\"d\":{\(queueMode ? "\"queue\":\"load-q\"," : "")\"target\":{\"application\":\"load-recv\",\"ops\":[\(ops)]},\"nonce\":\(s),\"payload\":{\"t0\":".utf8)
}
let suffix = nats || redis ? Array(",\"pad\":\"\(padding.dropFirst(min(padding.count, 10)))\"}".utf8)
                  : Array(",\"pad\":\"\(padding)\"}}}".utf8)
let publish = Array("PUB \(subject) ".utf8)
let crlf: [UInt8] = [13, 10]
var frame: [UInt8] = []
frame.reserveCapacity(4096)
var sentPerSender = [Int](repeating: 0, count: options.senders)
var inFlight = [Int](repeating: 0, count: options.senders)
var deliveredPerSender = [Int](repeating: 0, count: options.senders)
let totalExpected = options.senders * options.messages * fanout
var delivered = 0
var latencies: [UInt64] = []
latencies.reserveCapacity(min(totalExpected, 2_000_000))
var pollfds = (receivers + senders).map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
/// --rate: nanoseconds between two sends of one sender.
let interval = options.rate > 0 ? 1e9 * Double(options.senders) / Double(options.rate) : 0
let start = nowNanos()
while delivered < totalExpected {
    // Each sender keeps at most `window` messages (times fan-out) in flight;
    // under --rate, it sends what is due by now instead.
    let now = interval > 0 ? nowNanos() : 0
    var nextDue = UInt64.max
    for (s, sender) in senders.enumerated() where sentPerSender[s] < options.messages {
        var batch = 0
        while sentPerSender[s] < options.messages && batch < 64 {
            if interval > 0 {
                // Senders staggered by interval/senders, not in step.
                let due = start + UInt64((Double(sentPerSender[s]) + Double(s) / Double(options.senders)) * interval)
                if due > now { nextDue = min(nextDue, due); break }
            } else if inFlight[s] >= options.window { break }
            // One reused buffer: no allocation per message.
            frame.removeAll(keepingCapacity: true)
            frame.append(contentsOf: prefixes[s])
            appendDecimal(nowNanos(), to: &frame)
            frame.append(contentsOf: suffix)
            if redis {
                sender.outbox.append(contentsOf: streamAddHead)
                sender.bulk(frame)
            } else if nats {
                sender.outbox.append(contentsOf: publish)
                sender.outbox.append(contentsOf: String(frame.count).utf8)
                sender.outbox.append(contentsOf: crlf)
                sender.outbox.append(contentsOf: frame)
                sender.outbox.append(contentsOf: crlf)
            } else {
                sender.queue(frame)
            }
            sentPerSender[s] += 1
            inFlight[s] += 1
            batch += 1
        }
        sender.flush()
    }
    if interval > 0 {
        // Sleep until the next send is due (or 10 ms), waking on input.
        let wait = nextDue == UInt64.max ? 10_000_000 : min(10_000_000, nextDue - min(nextDue, nowNanos()))
        var timeout = timespec(tv_sec: 0, tv_nsec: Int(wait))
        _ = ppoll(&pollfds, nfds_t(pollfds.count), &timeout, nil)
    } else {
        _ = poll(&pollfds, nfds_t(pollfds.count), 10)
    }
    for (index, r) in receivers.enumerated() where pollfds[index].revents != 0 {
        func account(_ frame: ArraySlice<UInt8>, t0: UInt64) {
            latencies.append(nowNanos() - t0)
            delivered += 1
            // The nonce says which sender; free one window slot per full fan-out.
            if let nonce = number(after: nonceMarker, in: frame) {
                let s = Int(nonce)
                r.received += 1
                // A message is done once all of its fan-out copies arrived.
                if s < inFlight.count {
                    deliveredPerSender[s] += 1
                    if deliveredPerSender[s] % fanout == 0 { inFlight[s] = max(0, inFlight[s] - 1) }
                }
            }
        }
        if redis {
            r.pumpRESP { bulks in
                // stream, id, field, value: one message.
                guard bulks.count == 4, let t0 = sendTime(in: bulks[3]) else { return }
                r.outbox.append(contentsOf: streamAckHead)
                r.bulk(bulks[1])
                r.outbox.append(contentsOf: streamReads[index])
                account(bulks[3], t0: t0)
            }
            continue
        }
        r.pump { frame in
            guard let t0 = sendTime(in: frame) else { return }
            if queueMode {
                frame.withUnsafeBufferPointer { bytes in
                    guard let at = offset(of: idMarker, in: bytes) else { return }
                    let start = at + idMarker.count
                    guard bytes.count - start >= 36 else { return }
                    r.frameHeader(ackPrefix.count + 36 + ackSuffix.count)
                    r.outbox.append(contentsOf: ackPrefix)
                    r.outbox.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<(start + 36)]))
                    r.outbox.append(contentsOf: ackSuffix)
                    r.queue(queueRequest)
                }
            }
            account(frame, t0: t0)
        }
    }
    if queueMode { for r in receivers { r.flush() } }
    for (index, sender) in senders.enumerated() where pollfds[receivers.count + index].revents != 0 { sender.pump { _ in } }
}
let elapsed = Double(nowNanos() - start) / 1e9
latencies.sort()
func percentile(_ p: Double) -> Double { Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000 }
let sentTotal = options.senders * options.messages
var extra = nats ? " protocol=nats" : redis ? " protocol=redis" : ""
if gte { extra += " target=gte" }
if options.rate > 0 { extra += " rate=\(options.rate)/s" }
print("mode=\(options.mode) senders=\(options.senders) receivers=\(options.receivers) population=\(options.population) payload=\(options.payloadBytes)B window=\(options.window)\(extra)")
print(String(format: "sent %d messages, delivered %d in %.2f s: %.0f sends/s, %.0f deliveries/s", sentTotal, delivered, elapsed, Double(sentTotal) / elapsed, Double(delivered) / elapsed))
if options.rate > 0 {
    print(String(format: "latency us: p50 %.0f  p90 %.0f  p99 %.0f  p999 %.0f  max %.0f", percentile(0.5), percentile(0.9), percentile(0.99), percentile(0.999), percentile(1.0)))
} else {
    print(String(format: "latency us: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f", percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)))
}
