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
    let content: OwnedRoutedMessage
    /// Bytes this message holds (copied nonce and payload, id, bookkeeping),
    /// counted against the queue's and the node's bounds.
    let cost: Int
    var state: State = .queued
    /// Times delivered (a delivery after the first is a redelivery).
    var deliveries = 0
    /// Loop milliseconds: when it was queued (last), delivered (unacked) or
    /// dead-lettered (dead).
    var since: Int64

    init(id: String, target: Query, content: OwnedRoutedMessage, cost: Int, now: Int64) {
        self.id = id
        self.target = target
        self.content = content
        self.cost = cost
        since = now
    }
}
