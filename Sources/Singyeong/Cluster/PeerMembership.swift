import Logging

/// A link as membership sees it: who is at the other end and how to drop
/// it. `PeerLink` is the one conformer in the node; tests use fakes.
protocol MembershipLink: AnyObject {
    /// The authenticated node id, once the handshake finished.
    var peerNodeID: String? { get }
    /// The node this link dialed (nil when accepted).
    var expectedNodeID: String? { get }
    var isOutbound: Bool { get }
    /// Drops the connection now (a newer link replaced it).
    func abort(reason: String)
}

/// What membership needs from below: opening a link to an address and
/// forgetting an unreachable node in the registry. The cluster implements
/// it with its listener and Redis registry.
protocol MembershipTransport: AnyObject {
    associatedtype Link: MembershipLink
    /// Starts a connection to `node` at `host:port`; nil (with `error` set)
    /// when it could not even start.
    func dial(node: String, host: String, port: Int, error: inout String) -> Link?
    /// Removes `node` from the registry ("if I can't reach you, you're gone";
    /// a live node puts itself back on its next tick).
    func removeFromRegistry(_ node: String)
}

/// Membership and dialing (cluster.md §2–§3): who the registry says is in
/// the cluster, which of them this node dials and when, and which links are
/// up. Visibility comes from links: only nodes with an authenticated link
/// are asked anything, so a partitioned node routes over what it reaches.
///
/// Of two nodes the one with the smaller id dials, so a pair has one link.
/// A failed dial backs off 1, 2, 4, then 8 ticks (reset once a link comes
/// up) and removes the node from the registry.
///
/// Pure bookkeeping over `Transport`: no sockets of its own, so every rule
/// here has a socket-free unit test (`PeerMembershipTests`).
final class PeerMembership<Transport: MembershipTransport> {
    typealias Link = Transport.Link
    let nodeID: String
    let tickSeconds: Double
    let logger: Logger
    unowned let transport: Transport
    /// Authenticated links by node id: the visible peers.
    private(set) var links: [String: Link] = [:]
    /// Outbound links whose handshake has not finished, by node id.
    private(set) var dialing: [String: Link] = [:]
    /// The registry's last answer: node id → advertised address.
    private(set) var members: [String: String] = [:]
    /// Failed dials per node and the time before which it is not dialed
    /// again.
    private var dialFailures: [String: (count: Int, notBefore: Double)] = [:]

    init(nodeID: String, tickSeconds: Double, logger: Logger, transport: Transport) {
        self.nodeID = nodeID
        self.tickSeconds = tickSeconds
        self.logger = logger
        self.transport = transport
    }

    /// The registry's members changed (or were read again): dial the ones
    /// this node is to dial that have no link, unless backing off.
    func membersChanged(_ members: [String: String], now: Double) {
        self.members = members
        for (id, address) in members where id != nodeID && links[id] == nil && dialing[id] == nil && nodeID < id {
            if let failure = dialFailures[id], now < failure.notBefore { continue }
            dial(id, address)
        }
        // Forget backoff state of nodes that left the registry.
        for id in dialFailures.keys where members[id] == nil { dialFailures[id] = nil }
    }

    private func dial(_ id: String, _ address: String) {
        guard let (host, port) = NodeAddress.splitHostPort(address) else {
            logger.warning("registry entry with an unusable address", metadata: ["node": "\(LogText.escape(id))", "address": "\(LogText.escape(address))"])
            return
        }
        var error = ""
        guard let link = transport.dial(node: id, host: host, port: port, error: &error) else {
            logger.warning("cannot dial peer", metadata: ["node": "\(LogText.escape(id))", "address": "\(LogText.escape(address))", "error": "\(error)"])
            transport.removeFromRegistry(id)
            return
        }
        dialing[id] = link
    }

    /// A link finished its handshake: it is now the link to its node.
    /// Returns false when it carries no node id (nothing changed).
    @discardableResult
    func linkUp(_ link: Link) -> Bool {
        guard let id = link.peerNodeID else { return false }
        if dialing[id] === link { dialing[id] = nil }
        dialFailures[id] = nil
        if let old = links[id], old !== link {
            // A reconnect raced the old link's failure detection: keep the new one.
            old.abort(reason: "replaced by a newer link")
        }
        links[id] = link
        logger.info("peer link up", metadata: ["node": "\(LogText.escape(id))", "outbound": "\(link.isOutbound)", "peers": "\(links.count)"])
        return true
    }

    /// A link ended (`wasUp`: after its handshake). A dial that never came
    /// up backs off and removes its node from the registry.
    func linkClosed(_ link: Link, wasUp: Bool, reason: String, now: Double) {
        let id = link.peerNodeID ?? link.expectedNodeID
        if let id, dialing[id] === link { dialing[id] = nil }
        if let id, links[id] === link {
            links[id] = nil
            logger.warning("peer link down", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)", "peers": "\(links.count)"])
        }
        if link.isOutbound && !wasUp, let id = link.expectedNodeID {
            let count = (dialFailures[id]?.count ?? 0) + 1
            dialFailures[id] = (count, now + tickSeconds * Double(1 << min(count - 1, 3)))
            logger.info("peer unreachable; removing it from the registry", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)", "failures": "\(count)"])
            transport.removeFromRegistry(id)
        }
    }

    /// How many dials to `node` failed in a row (0 once a link came up).
    func dialFailureCount(_ node: String) -> Int { dialFailures[node]?.count ?? 0 }
}
