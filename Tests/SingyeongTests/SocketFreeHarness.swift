import CLibev
import Foundation
import Logging
@testable import Singyeong

/// The HTTP side of the socket-free tests: answers every request with its
/// path as the body (so tests can check the order of responses), can hold
/// chosen paths back to answer later (a response waiting for peers), and
/// routes `/gateway` to the WebSocket endpoint when there is one.
final class StubApplication: HTTPApplication {
    var endpoint: WebSocketEndpoint?
    /// Paths answered later, through `pending`.
    var deferredPaths: Set<String> = []
    private(set) var pending: [(HTTPResponse) -> Void] = []
    /// Paths in the order the application saw them.
    private(set) var seen: [String] = []

    func upgrade(for head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> HTTPUpgrade? {
        String(decoding: buffer[head.path], as: UTF8.self) == "/gateway" ? endpoint : nil
    }

    func respond(to head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                 peer: PeerAddress, later: @escaping (HTTPResponse) -> Void,
                 onCancel: (@escaping () -> Void) -> Void) -> HTTPResponse? {
        let path = String(decoding: buffer[head.path], as: UTF8.self)
        seen.append(path)
        if deferredPaths.contains(path) {
            pending.append(later)
            return nil
        }
        return HTTPResponse(status: 200, body: Array(path.utf8))
    }

    /// Answers the oldest held-back request with its path.
    func answerPending(_ path: String) {
        let later = pending.removeFirst()
        later(HTTPResponse(status: 200, body: Array(path.utf8)))
    }
}

/// A gateway on its own private libev loop (never run, never shared:
/// tests run in parallel), with the node's wiring of WebSocket endpoint and
/// sessions, and connections that are `RecordingConnection`s upgraded by a
/// real `HTTPConnectionHandler`. Holds every object the handlers keep
/// `unowned`, so a test keeps the harness and nothing dangles.
final class GatewayHarness {
    let loop = EventLoop(raw: ev_loop_new(0)!)
    let settings: Settings
    let logger: Logger
    let gateway: Gateway
    let endpoint: WebSocketEndpoint
    let application = StubApplication()
    private(set) var connections: [RecordingConnection] = []

    init(settings: Settings = .defaults()) {
        self.settings = settings
        var logger = Logger(label: "test.gateway")
        logger.logLevel = .critical
        self.logger = logger
        gateway = Gateway(loop: loop, logger: logger, settings: settings)
        let limits = WebSocketEndpoint.Limits(identifyMaxSize: settings.identifyMaxSize, maxFrameSize: settings.maxFrameSize,
                                              identifyTimeout: settings.identifyTimeout, idleTimeout: settings.idleTimeout)
        endpoint = WebSocketEndpoint(loop: loop, logger: logger, limits: limits) { [gateway] socket, connection, encoding in
            GatewaySession(gateway: gateway, socket: socket, connection: connection, encoding: encoding)
        }
        application.endpoint = endpoint
    }

    /// A fresh HTTP connection (nothing received yet).
    func httpConnection() -> RecordingConnection {
        let connection = RecordingConnection(handler: HTTPConnectionHandler(application: application, limits: HTTPParserLimits(), logger: logger))
        connections.append(connection)
        return connection
    }

    /// A connection upgraded to the gateway; its sends so far are the 101
    /// and HELLO.
    func gatewayConnection(encoding: String = "json") -> RecordingConnection {
        let connection = httpConnection()
        connection.receive(Array(("GET /gateway?encoding=\(encoding) HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        return connection
    }

    /// IDENTIFY as `client` of `app` on `connection`; returns the frames it answered.
    @discardableResult
    func identify(_ connection: RecordingConnection, client: String = "c1", app: String = "app", reconnect: Bool = false) -> [ServerFrame] {
        connection.receive(gatewayTextFrame(#"{"op":1,"d":{"client_id":"\#(client)","application_id":"\#(app)","reconnect":\#(reconnect)}}"#))
        return ServerFrame.decode(connection.takeSent())
    }
}

/// HTTP/1.1 responses split out of a connection's sends: status and body
/// of each, in order (by content-length).
func httpResponses(_ sends: [[UInt8]]) -> [(status: Int, body: String)] {
    let bytes = sends.flatMap { $0 }
    var result: [(Int, String)] = []
    var i = 0
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    while i < bytes.count {
        guard let end = (i...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else { break }
        let head = String(decoding: bytes[i..<end], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        let length = lines.dropFirst().compactMap { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "content-length" ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
        }.first ?? 0
        let bodyStart = end + 4
        result.append((status, String(decoding: bytes[bodyStart..<min(bodyStart + length, bytes.count)], as: UTF8.self)))
        i = bodyStart + length
    }
    return result
}
