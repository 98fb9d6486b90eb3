/// The queue operations of `queues.md` as the gateway needs them. Owned here,
/// below both, so that the gateway (which parses the frames) and the queue
/// service (which holds the queues, `Queue/`) do not use each other; the
/// node wires one to the other.
protocol QueueOperations: AnyObject {
    /// QUEUE: stores the message (target, nonce and payload copied from
    /// `targetBytes` and `message`, in its encoding) and calls `answer`
    /// exactly once, now or when the store has answered: `.done` (write
    /// QUEUE_CONFIRM; it is sent before any delivery the message causes) or
    /// `.refused` (a reason for op 3; nothing was stored).
    func enqueue(queue: String, target: Query, targetBytes: UnsafeRawBufferPointer, message: RoutedMessage,
                 from producer: ClientRecord, answer: @escaping (QueueOutcome) -> Void)
    /// QUEUE_REQUEST: `consumer` waits for one message (a repeated request
    /// keeps its place). `answer` runs at most once, with `.refused` only
    /// (perhaps later, from the queue's node); nothing means accepted.
    func request(queue: String, by consumer: ClientRecord, answer: @escaping (QueueOutcome) -> Void)
    /// QUEUE_REQUEST_CANCEL.
    func cancelRequest(queue: String, by consumer: ClientRecord)
    /// QUEUE_ACK: the message is done, wherever it still is. `answer` as
    /// for `request`.
    func acknowledge(queue: String, id: String, answer: @escaping (QueueOutcome) -> Void)
    /// The client's metadata changed (a flush): a deliver-only attempt on the
    /// queues it waits on.
    func metadataChanged(of record: ClientRecord)
    /// The client is gone: it waits on nothing any more.
    func clientGone(_ record: ClientRecord)
}

/// What a queue operation came to.
enum QueueOutcome: Equatable {
    case done
    /// Nothing changed; the text is the op 3 `error`.
    case refused(String)
}
