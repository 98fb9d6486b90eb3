import Foundation
@testable import Singyeong

/// A `ConnectionContext` without a socket, for unit tests (issue 11): bytes
/// fed in with `receive` go to the handler the way `Connection` hands them
/// over (successor handlers after an upgrade, unconsumed bytes kept and
/// offered again), and everything the handler does — bytes sent, closes,
/// deadline calls — is recorded. Like SwiftNIO's EmbeddedChannel, it lets
/// protocol tests run in milliseconds without processes or sleeps.
///
/// Sends after a close are dropped, as `Connection` drops them; nothing
/// is flushed or timed: a test fires the armed deadline itself
/// (`fireDeadline`) and ends the connection with `finishClose`.
final class RecordingConnection: ConnectionContext {
    /// One call the handler made.
    enum Call: Equatable {
        case closeAfterFlush(String)
        case abort(String)
        case touchIdleDeadline
        case startIdleDeadline
        case startHandshakeDeadline
        /// `armDeadline(in:)`, by the queue's duration in seconds.
        case armDeadline(Double)
        case resumeInput
    }

    var peer: PeerAddress
    var handler: ConnectionHandler
    private(set) var isOpen = true
    private(set) var endReason: String?
    /// Every non-send call, in order.
    private(set) var calls: [Call] = []
    /// The bytes of every send, in order.
    private(set) var sent: [[UInt8]] = []
    /// Bytes the handler has not consumed yet.
    private(set) var input: [UInt8] = []
    /// `connectionClosed` was delivered.
    private(set) var closeDelivered = false

    init(handler: ConnectionHandler, peer: PeerAddress = RecordingConnection.loopbackPeer) {
        self.handler = handler
        self.peer = peer
    }

    /// 127.0.0.1:40000.
    static var loopbackPeer: PeerAddress {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(40000).bigEndian
        sin.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) }
        }
        return PeerAddress(storage)
    }

    // MARK: ConnectionContext

    func send(_ bytes: OutboundBytes) {
        guard isOpen else { return }
        sent.append(bytes.withBytes { Array($0) })
    }

    func closeAfterFlush(reason: String) {
        calls.append(.closeAfterFlush(reason))
        guard isOpen else { return }
        isOpen = false
        endReason = endReason ?? reason
    }

    func abort(reason: String) {
        calls.append(.abort(reason))
        isOpen = false
        endReason = endReason ?? reason
    }

    func touchIdleDeadline() { calls.append(.touchIdleDeadline) }
    func startIdleDeadline() { calls.append(.startIdleDeadline) }
    func startHandshakeDeadline() { calls.append(.startHandshakeDeadline) }
    func armDeadline(in queue: DeadlineQueue) { calls.append(.armDeadline(queue.duration)) }

    func resumeInput() {
        calls.append(.resumeInput)
        deliverKept()
    }

    func tlsExporter(label: String) -> [UInt8]? { nil }

    // MARK: Driving it

    /// Bytes from the peer, in one read.
    func receive(_ bytes: [UInt8]) {
        guard isOpen else { return }
        input += bytes
        deliverKept()
    }

    /// The connection's deadline passed (whichever the handler armed last).
    func fireDeadline() {
        guard isOpen else { return }
        handler.connectionDeadlineExpired(self)
    }

    /// The end of the loop turn after a close (or the peer going away):
    /// the handler hears `connectionClosed`, once.
    func finishClose(reason: String = "peer closed") {
        if isOpen { abort(reason: reason) }
        guard !closeDelivered else { return }
        closeDelivered = true
        handler.connectionClosed(self)
    }

    /// Takes the recorded sends (so a test can check each step's output).
    func takeSent() -> [[UInt8]] {
        defer { sent = [] }
        return sent
    }

    /// `Connection.deliver`: the handler (and its successor, if it
    /// replaced itself) gets the kept bytes; what it consumed is dropped.
    private func deliverKept() {
        guard !input.isEmpty else { return }
        var offset = 0
        input.withUnsafeMutableBytes { bytes in
            while offset < bytes.count && isOpen {
                let current = handler
                offset += current.connection(self, received: UnsafeMutableRawBufferPointer(rebasing: bytes[offset...]))
                if current === handler { break }
            }
        }
        input.removeFirst(min(offset, input.count))
    }
}

/// One server-to-client WebSocket frame, decoded for a test's checks.
struct ServerFrame: Equatable {
    var opcode: UInt8
    var payload: [UInt8]

    /// The payload as JSON (text frames of the JSON encoding).
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
    }

    /// The gateway frame's `op`.
    var op: Int? { json?["op"] as? Int }

    /// The gateway frame's `d`, as an object.
    var d: [String: Any]? { json?["d"] as? [String: Any] }

    /// The close code of a close frame.
    var closeCode: UInt16? {
        opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
    }

    /// Splits concatenated server frames (unmasked, FIN set; the server
    /// never fragments). Stops at a partial frame.
    static func decode(_ bytes: [UInt8]) -> [ServerFrame] {
        var frames: [ServerFrame] = []
        var i = 0
        while i + 2 <= bytes.count {
            let opcode = bytes[i] & 0x0F
            var length = Int(bytes[i + 1] & 0x7F)
            var start = i + 2
            if length == 126 {
                guard start + 2 <= bytes.count else { break }
                length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
                start += 2
            } else if length == 127 {
                guard start + 8 <= bytes.count else { break }
                length = bytes[start..<start + 8].reduce(0) { $0 << 8 | Int($1) }
                start += 8
            }
            guard start + length <= bytes.count else { break }
            frames.append(ServerFrame(opcode: opcode, payload: Array(bytes[start..<start + length])))
            i = start + length
        }
        return frames
    }

    /// Every frame in a list of sends.
    static func decode(_ sends: [[UInt8]]) -> [ServerFrame] { decode(sends.flatMap { $0 }) }

    static func == (a: ServerFrame, b: ServerFrame) -> Bool { a.opcode == b.opcode && a.payload == b.payload }
}

/// A masked client text frame carrying `json` (a gateway frame).
func gatewayTextFrame(_ json: String) -> [UInt8] {
    webSocketClientFrame(.text, Array(json.utf8))
}
