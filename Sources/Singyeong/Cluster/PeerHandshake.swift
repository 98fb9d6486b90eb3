/// The peer-link handshake (protocol version 3) as a pure state machine:
/// `PeerLink` feeds it what the peer sent and carries out the actions it
/// returns, so the order of proofs is testable without sockets.
///
/// On the wire:
///
///     dialer   → HELLO {v, node, nonce}
///     acceptor → HELLO {v, node, nonce}    nothing derived from COOKIE
///     dialer   → AUTH  {mac}               the dialer proves first
///     acceptor → AUTH  {mac}               only once the dialer's proof checked out
///
/// Anyone can connect to a cluster port, so the accepting side hands out
/// nothing keyed by COOKIE until the connection has proved it knows COOKIE:
/// a stranger never gets an HMAC to test COOKIE guesses against offline.
/// A dialer only proves itself to a node it picked from the registry.
/// A side that refuses what the other sent answers REFUSE `{"code",
/// "reason"}` and closes (frames that cannot even be read — over the
/// pre-authentication size limit, undecodable — just close the link).
struct PeerHandshake {
    enum Phase: Equatable {
        /// Waiting for the peer's HELLO.
        case awaitingHello
        /// HELLOs exchanged; waiting for the peer's AUTH.
        case awaitingProof
        /// The peer proved it knows COOKIE.
        case authenticated
        case failed
    }

    /// Why a handshake failed; `code` is what REFUSE tells the peer.
    enum FailureKind: String, Equatable {
        case malformed, version, nodeID = "node-id", wrongNode = "wrong-node", itself, proof, unexpected, refused
    }

    struct Failure: Equatable {
        var kind: FailureKind
        /// For the log: peer-supplied text in it is already escaped.
        var reason: String
    }

    /// What the link must do, in order.
    enum Action: Equatable {
        /// Send our HELLO (version, node id, nonce).
        case sendHello
        /// Send AUTH with this proof.
        case sendProof(String)
        /// The peer proved itself: the link is up.
        case authenticated
        /// Refuse the link (REFUSE, then close) and log the reason.
        case fail(Failure)
    }

    /// Longest node id accepted from a peer (ours are 32 hex characters).
    static let maxNodeIDBytes = 128

    let role: PeerAuthentication.Role
    let cookie: String
    let localID: String
    let nonce: String
    /// The node a dialer picked from the registry.
    let expectedPeerID: String?
    /// The TLS session's exporter value (hex), "" on plain TCP.
    let channelBinding: String
    private(set) var phase = Phase.awaitingHello
    private(set) var peerID: String?
    private var peerNonce = ""

    init(role: PeerAuthentication.Role, cookie: String, localID: String, nonce: String = PeerAuthentication.makeNonce(),
         expectedPeerID: String? = nil, channelBinding: String = "") {
        self.role = role
        self.cookie = cookie
        self.localID = localID
        self.nonce = nonce
        self.expectedPeerID = expectedPeerID
        self.channelBinding = channelBinding
    }

    /// What to send once the connection is usable: the dialer speaks first.
    mutating func start() -> [Action] {
        role == .dialer ? [.sendHello] : []
    }

    /// The peer's HELLO; nil fields were missing or of the wrong type.
    mutating func receiveHello(version: Int64?, nodeID: String?, nonce peerNonce: String?) -> [Action] {
        guard phase == .awaitingHello else { return fail(.unexpected, "HELLO out of order") }
        guard let version, let nodeID, let peerNonce else { return fail(.malformed, "malformed HELLO") }
        guard version == PeerFrameCodec.protocolVersion else {
            return fail(.version, "peer speaks protocol version \(version), this node \(PeerFrameCodec.protocolVersion)")
        }
        if let problem = PeerHandshake.nodeIDProblem(nodeID) { return fail(.nodeID, problem) }
        guard PeerHandshake.isNonce(peerNonce) else { return fail(.malformed, "malformed HELLO nonce") }
        if let expectedPeerID, nodeID != expectedPeerID {
            return fail(.wrongNode, "dialed node \(LogText.escape(expectedPeerID)) but \(LogText.escape(nodeID)) answered (stale registry entry)")
        }
        guard nodeID != localID else { return fail(.itself, "connected to itself") }
        peerID = nodeID
        self.peerNonce = peerNonce
        phase = .awaitingProof
        switch role {
        case .acceptor:
            return [.sendHello]
        case .dialer:
            return [.sendProof(proof(by: .dialer))]
        }
    }

    /// The peer's AUTH; nil when its `mac` was missing.
    mutating func receiveProof(_ mac: String?) -> [Action] {
        guard phase == .awaitingProof else { return fail(.unexpected, "AUTH before HELLO") }
        guard let mac else { return fail(.malformed, "malformed AUTH") }
        let peerRole: PeerAuthentication.Role = role == .dialer ? .acceptor : .dialer
        guard PeerAuthentication.equal(mac, proof(by: peerRole)) else {
            return fail(.proof, "wrong proof: the peer's COOKIE differs")
        }
        phase = .authenticated
        return role == .acceptor ? [.sendProof(proof(by: .acceptor)), .authenticated] : [.authenticated]
    }

    /// The peer gave up on us (REFUSE); its text is escaped here.
    mutating func receiveRefusal(code: String?, reason: String?) -> [Action] {
        let text = "peer refused the link: \(LogText.escape(reason ?? "no reason given"))"
        return fail(code == FailureKind.proof.rawValue ? .proof : .refused, text)
    }

    /// Any other frame before the handshake finished.
    mutating func receiveOther(_ type: String) -> [Action] {
        fail(.unexpected, "\(type) frame before the handshake completed")
    }

    /// The proof `by` sends on this link.
    private func proof(by sender: PeerAuthentication.Role) -> String {
        let peerID = peerID ?? ""
        let (senderID, senderNonce, receiverID, receiverNonce) = sender == role
            ? (localID, nonce, peerID, peerNonce) : (peerID, peerNonce, localID, nonce)
        return PeerAuthentication.proof(cookie: cookie, role: sender, senderID: senderID, senderNonce: senderNonce,
                                        receiverID: receiverID, receiverNonce: receiverNonce, channelBinding: channelBinding)
    }

    private mutating func fail(_ kind: FailureKind, _ reason: String) -> [Action] {
        phase = .failed
        return [.fail(Failure(kind: kind, reason: reason))]
    }

    /// Why a peer's node id is refused (it ends up in log lines and metric
    /// labels), nil if it is fine: empty, longer than `maxNodeIDBytes`, or
    /// holding control or invisible characters. The reason shows the id
    /// escaped.
    static func nodeIDProblem(_ id: String) -> String? {
        if id.isEmpty { return "empty node id" }
        if id.utf8.count > maxNodeIDBytes {
            return "node id of \(id.utf8.count) bytes (at most \(maxNodeIDBytes)): \(LogText.escape(id))"
        }
        if LogText.hasControlCharacters(id) { return "node id with control characters: \(LogText.escape(id))" }
        return nil
    }

    /// 32 to 128 hex digits (ours are 64).
    static func isNonce(_ text: String) -> Bool {
        let bytes = text.utf8
        return (32...128).contains(bytes.count) && bytes.allSatisfy { (48...57).contains($0) || (97...102).contains($0) || (65...70).contains($0) }
    }
}
