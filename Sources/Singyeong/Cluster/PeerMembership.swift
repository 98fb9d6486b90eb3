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
    /// Closes the connection once what is queued on it was written.
    func close(reason: String)
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
/// Both nodes of a pair dial while they have no link, so a pair links when
/// only one direction works (a one-way firewall rule). The node with the
/// smaller id dials at once; the other waits `reverseDialTicks` first, so
/// usually one link is made. When both dials succeed, each side keeps the
/// link dialed by the smaller id — the same one on both sides, decided
/// without a message — and keeps the other as a spare: still read (what
/// the peer sent on it before switching arrives), sent nothing new, and
/// closed by its dialer after `spareGraceTicks`. The spare takes over if
/// the kept link fails first (it was only half-open, say), so the pair is
/// never without a working link it has.
///
/// A failed dial backs off 1, then 2 ticks (reset once a link comes up) and
/// removes the node from the registry unless a link to it is up. The
/// backoff is short on purpose: it bounds how long a node that comes back
/// stays unseen (README, "Clustering": a dial that hangs ends within 2
/// ticks, the next starts 2 ticks later), and a dial is one connection
/// attempt. Nodes that are really gone leave the registry when their key
/// expires, and then nobody dials them.
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
    /// The up link not in use per node (the other of a simultaneous pair)
    /// and when it became one.
    private(set) var spares: [String: (link: Link, since: Double)] = [:]
    /// Nodes that said they are leaving (node ids are per process, so one
    /// never comes back); forgotten once the registry no longer lists them.
    private var departedIDs: Set<String> = []
    /// Members this node is not first to dial (their id is smaller), by when
    /// they were first seen without a link.
    private var unlinkedSince: [String: Double] = [:]
    /// Ticks the node with the larger id waits for the other's dial.
    let reverseDialTicks = 2.0
    /// Longest wait between two dials of a node that stays unreachable.
    let maxBackoffTicks = 2.0
    /// Ticks a spare stays open before its dialer closes it: longer than a
    /// request's round trip on a live link, shorter than the idle timeout
    /// (3 ticks) of a link that is sent nothing.
    let spareGraceTicks = 2.0

    init(nodeID: String, tickSeconds: Double, logger: Logger, transport: Transport) {
        self.nodeID = nodeID
        self.tickSeconds = tickSeconds
        self.logger = logger
        self.transport = transport
    }

    /// Every link in use and every spare: what must hear of state that a
    /// spare could need once it takes over (application announcements).
    var allLinks: [Link] { Array(links.values) + spares.values.map(\.link) }

    /// The registry's members changed (or were read again, or the tick
    /// redials while Redis is away): dial the ones without a link, unless
    /// backing off or waiting for the smaller id's dial.
    func membersChanged(_ members: [String: String], now: Double) {
        self.members = members
        for (id, address) in members where id != nodeID && links[id] == nil && dialing[id] == nil && !departedIDs.contains(id) {
            if let failure = dialFailures[id], now < failure.notBefore { continue }
            if id < nodeID {
                let since = unlinkedSince[id] ?? now
                unlinkedSince[id] = since
                if now - since < reverseDialTicks * tickSeconds { continue }
            }
            dial(id, address)
        }
        // Forget the state of nodes that left the registry.
        for id in dialFailures.keys where members[id] == nil { dialFailures[id] = nil }
        for id in departedIDs where members[id] == nil { departedIDs.remove(id) }
        for id in unlinkedSince.keys where members[id] == nil || links[id] != nil { unlinkedSince[id] = nil }
    }

    /// `node` is shutting down: not dialed again once its links close.
    func departed(_ node: String) {
        departedIDs.insert(node)
    }

    /// Every tick: a spare this node dialed is closed once its grace passed
    /// (the peer, its acceptor, leaves closing to us).
    func tick(now: Double) {
        for (id, spare) in spares where spare.link.isOutbound && links[id] != nil
            && now - spare.since >= spareGraceTicks * tickSeconds {
            spare.link.close(reason: "duplicate link")
        }
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

    /// A link finished its handshake: it becomes the link to its node, or
    /// that node's spare. Returns false when it carries no node id (nothing
    /// changed).
    @discardableResult
    func linkUp(_ link: Link, now: Double) -> Bool {
        guard let id = link.peerNodeID else { return false }
        if dialing[id] === link { dialing[id] = nil }
        dialFailures[id] = nil
        unlinkedSince[id] = nil
        if let current = links[id], current !== link {
            if current.isOutbound == link.isOutbound {
                // A reconnect raced the old link's failure detection: keep the new one.
                current.abort(reason: "replaced by a newer link")
            } else if isDialedBySmallerID(current, to: id) {
                makeSpare(link, of: id, now: now)
                logger.info("second peer link kept as a spare", metadata: ["node": "\(LogText.escape(id))", "outbound": "\(link.isOutbound)"])
                return true
            } else {
                makeSpare(current, of: id, now: now)
            }
        }
        links[id] = link
        logger.info("peer link up", metadata: ["node": "\(LogText.escape(id))", "outbound": "\(link.isOutbound)", "peers": "\(links.count)"])
        return true
    }

    /// Of a simultaneous pair, both sides keep the link the smaller id dialed.
    private func isDialedBySmallerID(_ link: Link, to id: String) -> Bool {
        link.isOutbound ? nodeID < id : id < nodeID
    }

    private func makeSpare(_ link: Link, of id: String, now: Double) {
        if let old = spares[id]?.link, old !== link { old.abort(reason: "replaced by a newer link") }
        spares[id] = (link, now)
    }

    /// A link ended (`wasUp`: after its handshake). A dial that never came
    /// up backs off and removes its node from the registry.
    func linkClosed(_ link: Link, wasUp: Bool, reason: String, now: Double) {
        let id = link.peerNodeID ?? link.expectedNodeID
        if let id, dialing[id] === link { dialing[id] = nil }
        if let id, spares[id]?.link === link { spares[id] = nil }
        if let id, links[id] === link {
            if let spare = spares.removeValue(forKey: id) {
                links[id] = spare.link
                logger.warning("peer link replaced by its spare", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)"])
            } else {
                links[id] = nil
                logger.warning("peer link down", metadata: ["node": "\(LogText.escape(id))", "reason": "\(reason)", "peers": "\(links.count)"])
            }
        }
        if link.isOutbound && !wasUp, let id = link.expectedNodeID {
            let count = (dialFailures[id]?.count ?? 0) + 1
            dialFailures[id] = (count, now + tickSeconds * (count == 1 ? 1 : maxBackoffTicks))
            // Reached the other way (a one-way cut): it is not gone.
            guard links[id] == nil else { return }
            // Logged at the 1st, 2nd, 4th, 8th... failure in a row: a
            // partitioned node is dialed every 2 ticks for as long as it lasts.
            if count & (count - 1) == 0 {
                logger.info("peer unreachable; removing it from the registry", metadata: [
                    "node": "\(LogText.escape(id))", "reason": "\(reason)", "failures": "\(count)",
                ])
            }
            transport.removeFromRegistry(id)
        }
    }

    /// How many dials to `node` failed in a row (0 once a link came up).
    func dialFailureCount(_ node: String) -> Int { dialFailures[node]?.count ?? 0 }
}
