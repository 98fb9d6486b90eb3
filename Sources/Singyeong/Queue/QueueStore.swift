/// Where a queue's messages are kept (QUEUE_STORE, issue 14 point 2).
///
/// The queue service always works on an in-memory mirror of each queue it
/// owns (`MessageQueue`), so dispatch attempts never wait. The store is what
/// makes that mirror more than the only copy: every change of the mirror is
/// written through it, in order, and a store that can no longer vouch for a
/// mirror (a write failed, the lease was lost) says so; the service then
/// drops the mirror and loads it again. Memory mode is the mirror alone.
protocol QueueStore: AnyObject {
    /// The service that hears about lost queues and a store come back.
    var delegate: QueueStoreDelegate? { get set }
    /// Whether writes can be made now; when false, QUEUE is refused.
    var isAvailable: Bool { get }
    /// The id this node holds leases under (nil: no leases, memory).
    var ownerID: String? { get }
    /// Starts (connects); `delegate.storeAvailable` follows when it can be used.
    func start()
    /// Gives up every lease (graceful shutdown; best effort), then `completion`.
    func stop(completion: @escaping () -> Void)
    /// The names of every queue that may hold messages (read when the store
    /// becomes available, so a restarted node serves them again).
    func knownQueues(completion: @escaping ([String]) -> Void)
    /// Takes the queue's lease and reads everything it holds. `completion`
    /// runs exactly once.
    func acquire(_ queue: String, completion: @escaping (QueueStoreResult<QueueSnapshot>) -> Void)
    /// Stores a new message (its bytes are read during the call only);
    /// `completion(nil)` only once it is stored (the QUEUE_CONFIRM waits for
    /// it), else with why it was not.
    func add(_ message: StoredQueueMessage.Parts, id: String, to queue: String, completion: @escaping (String?) -> Void)
    /// Writes one move the mirror made; `from` is where the message was
    /// (a store then touches only that place) and `delivered` whether it
    /// was ever delivered. Failure makes the store report the queue lost
    /// (`delegate.storeLost`), never silently.
    func record(_ move: QueueMove, id: String, from: QueuedMessage.State, delivered: Bool, in queue: String)
    /// The service forgot an idle queue: its lease may go.
    func release(_ queue: String)
}

/// What a store tells the service.
protocol QueueStoreDelegate: AnyObject {
    /// The store cannot vouch for the mirror of `queue` any more: drop it and
    /// acquire again. `reason` is for the log.
    func storeLost(_ queue: String, reason: String)
    /// The store can be used (again): acquire what is not loaded.
    func storeAvailable()
}

/// A move of one message between the places of its queue (queues.md §1).
enum QueueMove: UInt8 {
    /// queued → unacked (a delivery; counted).
    case delivered = 0x64  // "d"
    /// queued or unacked → dead.
    case deadLettered = 0x78  // "x"
    /// dead → queued (the GC's requeue).
    case requeued = 0x72  // "r"
    /// gone from wherever it was (QUEUE_ACK).
    case acknowledged = 0x61  // "a"
}

/// An acquire's answer.
enum QueueStoreResult<Value> {
    case success(Value)
    /// Another node holds the lease (its id, as the store knows it).
    case ownedElsewhere(String)
    /// The store is unavailable or answered an error (for the log).
    case failure(String)
}

/// Everything a queue held when its lease was taken: messages by place,
/// oldest first, with how long ago they got there (ms by the store's clock)
/// and how often each was delivered.
struct QueueSnapshot {
    /// One message as read: its id, stored form, time in its place and
    /// delivery count.
    struct Entry {
        let id: String
        let message: StoredQueueMessage
        let age: Int64
        let deliveries: Int
    }

    var queued: [Entry] = []
    var unacked: [Entry] = []
    var dead: [Entry] = []
}

/// The memory store (QUEUE_STORE=memory): nothing beyond the mirror, as the
/// original. Every write succeeds at once, so a confirm is sent in the same
/// turn as the QUEUE; everything is lost with the process.
final class MemoryQueueStore: QueueStore {
    /// Unowned, not weak: the service owns its store, and a weak reference
    /// would make each retain and release of the service slow.
    unowned var delegate: QueueStoreDelegate?
    var isAvailable: Bool { true }
    var ownerID: String? { nil }
    func start() {}
    func stop(completion: @escaping () -> Void) { completion() }

    func knownQueues(completion: @escaping ([String]) -> Void) { completion([]) }

    func acquire(_ queue: String, completion: @escaping (QueueStoreResult<QueueSnapshot>) -> Void) {
        completion(.success(QueueSnapshot()))
    }

    func add(_ message: StoredQueueMessage.Parts, id: String, to queue: String, completion: @escaping (String?) -> Void) {
        completion(nil)
    }

    func record(_ move: QueueMove, id: String, from: QueuedMessage.State, delivered: Bool, in queue: String) {}
    func release(_ queue: String) {}
}
