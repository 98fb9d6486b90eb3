/// One message of a queue (queues.md §1): the id the server gave it, the
/// producer's target, and its nonce and payload copied once in the
/// producer's encoding (each consumer gets them in its own).
///
/// A message is in exactly one place at a time (`state`); an acknowledged
/// one is `.done` and is skipped wherever a stale reference to it remains
/// (the queue's lists drop such entries lazily, so an ACK is O(1)).
final class QueuedMessage {
    enum State: Equatable {
        case queued, unacked, dead, done
    }

    /// UUID v4 text, kept across redeliveries.
    let id: String
    let target: Query
    /// The target as it arrived (encoding tag, then its bytes): what groups
    /// messages by target (the compiled `Query` is not unique per bytes: the
    /// query cache is bounded and skips large targets). Shared with the
    /// queue's group, so held once per distinct target.
    let targetKey: TargetKey
    let content: OwnedRoutedMessage
    /// Bytes this message holds (copied nonce and payload, id, bookkeeping),
    /// counted against the queue's and the node's bounds.
    let cost: Int
    var state: State = .queued
    /// Times delivered (a delivery after the first is a redelivery).
    var deliveries = 0
    /// Its position in the queue's order, given each time it is queued
    /// (a list entry with another position is stale).
    var order: UInt64 = 0
    /// Loop milliseconds: when it was queued (last), delivered (unacked) or
    /// dead-lettered (dead).
    var since: Int64

    init(id: String, target: Query, targetKey: TargetKey, content: OwnedRoutedMessage, cost: Int, now: Int64) {
        self.id = id
        self.target = target
        self.targetKey = targetKey
        self.content = content
        self.cost = cost
        since = now
    }
}

/// A target as it arrived: its encoding's tag, then its bytes. Hashed once,
/// in bulk: a `[UInt8]` key hashes byte by byte through `Hasher`, which was
/// 6.7 % of the node's CPU in the queue benchmark.
struct TargetKey: Hashable {
    let bytes: [UInt8]
    private let hashValue64: Int

    init(encoding: PayloadEncoding, target: some Collection<UInt8>) {
        var bytes: [UInt8] = [encoding == .json ? 0 : 1]
        bytes.append(contentsOf: target)
        self.bytes = bytes
        var h = Hasher()
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
        hashValue64 = h.finalize()
    }

    static func == (a: TargetKey, b: TargetKey) -> Bool { a.hashValue64 == b.hashValue64 && a.bytes == b.bytes }
    func hash(into hasher: inout Hasher) { hasher.combine(hashValue64) }
}
