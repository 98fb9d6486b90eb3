/// One identified client on this node: who it is, its metadata, and the
/// session that delivers to it.
///
/// The store holds records strongly; the session holds its own record, and
/// the record its session, strongly too: the session's cleanup (which runs
/// when its connection ends, and is what removes the record from the store)
/// sets `session` to nil and so breaks the cycle. A record is removed
/// exactly once (`isRegistered` guards the cleanup).
final class ClientRecord {
    let applicationID: String
    let clientID: String
    /// A number unique on this node for the process lifetime: the handle
    /// other parts (and, later, peer nodes) use instead of the id strings.
    let handle: UInt64
    let restricted: Bool
    let encoding: PayloadEncoding
    /// Subscribed to CLIENT_CONNECTED / CLIENT_DISCONNECTED (never when restricted).
    let receivesClientUpdates: Bool
    /// Proxy address: identify `ip`, else the TCP peer; nil when restricted.
    let socketIP: String?
    /// 2019 identify `tags` (discovery), ignored for restricted clients.
    let tags: [String]
    /// Read for every candidate of every query, so it is exempt from
    /// dynamic exclusivity checking (BENCHMARKS.md, "Checked release
    /// build": the check cost ~100 instructions per read). Why no two
    /// accesses can overlap: one thread; the only writes are
    /// `ClientStore.touchHeartbeat` (`setReserved`, a ClientMetadata method
    /// that calls out to nothing) and `ClientStore.updateMetadata`, whose
    /// `change` closures (in
    /// Gateway.enqueue/flushMetadata) touch only their inout parameter and
    /// locals.
    @exclusivity(unchecked) var metadata: ClientMetadata
    /// The metadata as it will be once the updates received but not yet
    /// applied are (METADATA_QUEUE_INTERVAL batching); nil when none wait.
    /// One copy, whatever the number of updates, so pending state is bounded
    /// by the metadata budget like the stored state.
    var projectedMetadata: ClientMetadata?
    /// The `last_heartbeat_time` metadata value, also kept here: it is
    /// checked on every frame (protocol.md §5.2), and reading it from the
    /// metadata cost a copy of the entries with its reference counting.
    /// Written with the metadata entry by `ClientStore.touchHeartbeat`.
    var lastHeartbeatTime: Int64
    /// Where messages for this client go; nil once the connection is gone.
    /// Strong, not weak: a weak reference gives every session a side table,
    /// so each retain and release of it takes Swift's slow path, and each
    /// delivery paid `swift_weakLoadStrong` (BENCHMARKS.md, issue 13).
    var session: ClientSession?
    /// Position in the application's client array (swap-remove bookkeeping).
    var storeIndex = -1
    /// Position in the store's subscriber array, or -1.
    var subscriberIndex = -1
    /// Set while the record is in the store.
    var isRegistered = false
    /// In the metadata flusher's dirty list.
    var isQueuedForFlush = false
    /// Queues the client waits on, in request order (`queues` in client
    /// descriptors); kept by the queue service.
    var waitingQueues: [String] = []

    init(applicationID: String, clientID: String, handle: UInt64, restricted: Bool, encoding: PayloadEncoding,
         receivesClientUpdates: Bool, socketIP: String?, tags: [String], metadata: ClientMetadata, session: ClientSession?) {
        self.applicationID = applicationID
        self.clientID = clientID
        self.handle = handle
        self.restricted = restricted
        self.encoding = encoding
        self.receivesClientUpdates = receivesClientUpdates
        self.socketIP = socketIP
        self.tags = tags
        self.metadata = metadata
        if case .int(let time)? = metadata.value(.lastHeartbeatTime) { lastHeartbeatTime = time } else { lastHeartbeatTime = 0 }
        self.session = session
    }
}
