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
