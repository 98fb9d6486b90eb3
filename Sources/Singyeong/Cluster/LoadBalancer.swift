/// GOODBYE load balancing (cluster.md §5, the 2022 formula):
///
///     n = visible nodes + 1; total = all nodes' client counts;
///     avg = round(total / n) (halves away from zero); max = avg + n − 1;
///     if this node has c > max clients: GOODBYE to c − max of them.
///
/// Peers report their counts in every ping; a count older than two ticks is
/// unknown, and with any unknown count the tick is skipped (§5). The most
/// recently connected clients are the ones asked to leave (least disruption
/// to long-lived connections).
enum LoadBalancer {
    /// How many local clients to send away, or 0.
    static func excess(local: Int, peers: [Int]) -> Int {
        let n = peers.count + 1
        guard n > 1 else { return 0 }
        let total = local + peers.reduce(0, +)
        let average = (Double(total) / Double(n)).rounded(.toNearestOrAwayFromZero)
        let maximum = Int(average) + n - 1
        return max(0, local - maximum)
    }
}

/// The GOODBYEs of earlier ticks still counted as this node's clients, so
/// that one imbalance gives one round of GOODBYEs.
///
/// A client sent away leaves this node's count at once but shows in a
/// peer's count only once it has reconnected there and that peer has pinged
/// again — often several ticks later. A tick in between would see the
/// imbalance again and send more away (7/1/1: two leave, then 5/1/1 sends a
/// third). So each tick's round counts as in flight until the peers' summed
/// counts have risen by that many since (arrivals credited to the oldest
/// round first), or for `graceTicks` ticks at most — the fallback for
/// clients that come back here or not at all. Waiting for the peers' counts
/// rather than a fixed 2 ticks: how long reconnecting takes is the
/// clients' business (backoff, an external load balancer), and a fixed
/// short grace would only postpone the overshoot. A rise in the peers'
/// counts for other reasons (new clients there, a link coming back) ends
/// the grace early; the formula then works on the counts as they are.
/// Falling peer counts are not arrivals and are ignored.
struct GoodbyeGrace {
    /// Longest a round counts as in flight, in ticks.
    let graceTicks: Int
    /// Rounds sent and not yet seen elsewhere, oldest first.
    private var rounds: [(tick: Int, count: Int)] = []
    /// Arrivals at peers credited to `rounds.first` (fewer than its count).
    private var arrived = 0
    private var lastPeerTotal: Int?
    /// Clients sent away and counted as still here, after the last `goodbyes`.
    private(set) var inFlight = 0

    init(graceTicks: Int) { self.graceTicks = graceTicks }

    /// How many local clients to send away on tick number `tick` (cluster.md
    /// §5 with the in-flight clients counted as still here, less those
    /// already on their way); the answer is recorded as a new round.
    mutating func goodbyes(tick: Int, local: Int, peers: [Int]) -> Int {
        let peerTotal = peers.reduce(0, +)
        if let last = lastPeerTotal, peerTotal > last { arrived += peerTotal - last }
        lastPeerTotal = peerTotal
        while let first = rounds.first, first.count <= arrived || tick - first.tick >= graceTicks {
            rounds.removeFirst()
            // An expired round takes its partial arrivals with it.
            arrived = first.count <= arrived ? arrived - first.count : 0
        }
        if rounds.isEmpty { arrived = 0 }
        let pending = rounds.reduce(0) { $0 + $1.count } - arrived
        let excess = max(0, LoadBalancer.excess(local: local + pending, peers: peers) - pending)
        if excess > 0 { rounds.append((tick, excess)) }
        inFlight = pending + excess
        return excess
    }
}
