import CLibev
import Logging
import Testing
@testable import Singyeong

/// `PeerLink` over two `RecordingConnection`s, bytes carried between them by
/// the test: the real frames, the handshake glue and the cluster's view of
/// a link, on top of what `PeerHandshakeTests` prove of the state machine.
/// Each `Cluster` binds its (unused) cluster port on 127.0.0.1; nothing
/// connects to it and its Redis registry is never started.
@Suite struct PeerLinkTests {
    /// One node: a gateway and a cluster on a private loop.
    final class Node {
        let loop = EventLoop(raw: ev_loop_new(0)!)
        let gateway: Gateway
        let cluster: Cluster

        init(cookie: String) throws {
            var logger = Logger(label: "test.peer")
            logger.logLevel = .critical
            let settings = try Settings.resolve(flags: [:], environment: [
                "CLUSTERING": "true", "COOKIE": cookie, "BIND": "127.0.0.1", "PORT": "0", "CLUSTER_PORT": "0",
                "CLUSTER_ADVERTISE": "127.0.0.1:1", "REDIS_DSN": "redis://127.0.0.1:6379/0",
            ], file: [:])
            gateway = Gateway(loop: loop, logger: logger, settings: settings)
            cluster = try Cluster(settings: settings, loop: loop, logger: logger, store: gateway.store, router: gateway.router,
                                  queryCache: gateway.queryCache, local: gateway, tls: nil)
        }
    }

    /// The frame types in a list of sends.
    static func frameTypes(_ sends: [[UInt8]]) -> [UInt8] {
        let bytes = sends.flatMap { $0 }
        var types: [UInt8] = []
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count,
                  let header = try? PeerFrameCodec.next(UnsafeRawBufferPointer(rebasing: raw[offset...]), maxBody: 1 << 24) {
                types.append(header.type)
                offset += header.frameLength
            }
        }
        return types
    }

    /// Carries bytes both ways until neither side sends more; returns the
    /// frame types each side sent, in order.
    static func pump(_ dialer: RecordingConnection, _ acceptor: RecordingConnection) -> (dialer: [UInt8], acceptor: [UInt8]) {
        var fromDialer: [UInt8] = [], fromAcceptor: [UInt8] = []
        for _ in 0..<10 {
            let a = dialer.takeSent(), b = acceptor.takeSent()
            if a.isEmpty && b.isEmpty { break }
            fromDialer += frameTypes(a)
            fromAcceptor += frameTypes(b)
            for bytes in a { acceptor.receive(bytes) }
            for bytes in b { dialer.receive(bytes) }
        }
        return (fromDialer, fromAcceptor)
    }

    @Test func handshakeBringsBothLinksUp() throws {
        let a = try Node(cookie: "secret-cookie-0123456789"), b = try Node(cookie: "secret-cookie-0123456789")
        let dialerLink = PeerLink(cluster: a.cluster, outboundTo: b.cluster.nodeID)
        let acceptorLink = PeerLink(cluster: b.cluster, outboundTo: nil)
        let dialer = RecordingConnection(handler: dialerLink), acceptor = RecordingConnection(handler: acceptorLink)
        dialerLink.connectionEstablished(dialer)
        let hello = PeerFrameType.hello.rawValue, auth = PeerFrameType.auth.rawValue
        let applications = PeerFrameType.applications.rawValue
        let sent = Self.pump(dialer, acceptor)
        #expect(Array(sent.dialer.prefix(2)) == [hello, auth])
        #expect(Array(sent.acceptor.prefix(2)) == [hello, auth])
        #expect(sent.dialer.contains(applications) && sent.acceptor.contains(applications), "each side's snapshot once up")
        #expect(dialerLink.isUp && acceptorLink.isUp)
        #expect(a.cluster.links[b.cluster.nodeID] === dialerLink)
        #expect(b.cluster.links[a.cluster.nodeID] === acceptorLink)
        #expect(dialer.calls.contains(.startIdleDeadline) && acceptor.calls.contains(.startIdleDeadline))
        #expect(dialer.isOpen && acceptor.isOpen)
    }

    /// Lame duck: the leaving node's peer stops choosing its clients and
    /// acknowledges on the same link; the leaving node closes its links only
    /// once nothing waits for an answer.
    @Test func aLeavingPeerIsAcknowledgedAndNoLongerACandidate() throws {
        let a = try Node(cookie: "secret-cookie-0123456789"), b = try Node(cookie: "secret-cookie-0123456789")
        let dialerLink = PeerLink(cluster: a.cluster, outboundTo: b.cluster.nodeID)
        let acceptorLink = PeerLink(cluster: b.cluster, outboundTo: nil)
        let dialer = RecordingConnection(handler: dialerLink), acceptor = RecordingConnection(handler: acceptorLink)
        dialerLink.connectionEstablished(dialer)
        _ = Self.pump(dialer, acceptor)
        #expect(b.cluster.mayHaveCandidates(ofApplication: nil))
        var acknowledged = false
        a.cluster.beginLeaving(registryLeft: {}, peersAcknowledged: { acknowledged = true })
        #expect(!acknowledged)
        let sent = Self.pump(dialer, acceptor)
        #expect(sent.dialer == [PeerFrameType.leaving.rawValue])
        #expect(sent.acceptor == [PeerFrameType.leavingAck.rawValue])
        #expect(acknowledged)
        #expect(acceptorLink.isLeaving && acceptorLink.isUp)
        #expect(!b.cluster.mayHaveCandidates(ofApplication: nil))
        #expect(!b.cluster.mayHaveCandidates(ofApplication: "app"))
        // Something still waits on the peer: the link stays open.
        let id = a.cluster.requests.makeID()
        let waiting = PeerRequestTable.Request()
        a.cluster.requests.start(waiting, id: id, waitingFor: [ObjectIdentifier(dialerLink)], deadlines: a.cluster.queryDeadlines)
        var left = false
        a.cluster.finishLeaving { left = true }
        #expect(!left && dialer.isOpen)
        a.cluster.requests.end(id, .answered)
        a.cluster.finishLeaving { left = true }
        #expect(left)
        #expect(dialer.calls.contains(.closeAfterFlush("shutdown")))
    }

    @Test func aWrongCookieIsRefused() throws {
        let a = try Node(cookie: "secret-cookie-0123456789"), b = try Node(cookie: "other-cookie-0123456789")
        let dialerLink = PeerLink(cluster: a.cluster, outboundTo: b.cluster.nodeID)
        let acceptorLink = PeerLink(cluster: b.cluster, outboundTo: nil)
        let dialer = RecordingConnection(handler: dialerLink), acceptor = RecordingConnection(handler: acceptorLink)
        dialerLink.connectionEstablished(dialer)
        let sent = Self.pump(dialer, acceptor)
        // The acceptor checks the dialer's proof first and refuses it.
        #expect(sent.acceptor.last == PeerFrameType.refuse.rawValue)
        #expect(!dialerLink.isUp && !acceptorLink.isUp)
        #expect(!acceptor.isOpen && !dialer.isOpen)
        #expect(a.cluster.links.isEmpty && b.cluster.links.isEmpty)
    }

    @Test func aStrangerCannotSendABigFrame() throws {
        let b = try Node(cookie: "secret-cookie-0123456789")
        let acceptorLink = PeerLink(cluster: b.cluster, outboundTo: nil)
        let acceptor = RecordingConnection(handler: acceptorLink)
        #expect(acceptorLink.maxBufferedInput == PeerFrameCodec.handshakeMaxFrame)
        let frame = PeerFrameCodec.make(.hello, body: [UInt8](repeating: 0, count: PeerFrameCodec.handshakeMaxFrame))
        acceptor.receive(frame.withBytes { Array($0.prefix(64)) })
        #expect(!acceptor.isOpen, "closed on the length prefix, before the body is buffered")
        #expect(acceptor.calls.contains { if case .abort = $0 { return true } else { return false } })
        #expect(acceptor.takeSent().isEmpty)
    }
}
