/// The node's identified clients, grouped by application so a query touches
/// only its application's clients.
///
/// Each application keeps a dense array (cache-friendly evaluation, O(1)
/// swap-remove) plus an id → index map for the duplicate check. Subscribers
/// of client updates are kept in their own dense array so CLIENT_CONNECTED
/// does not scan every client.
///
/// Each application also indexes its clients by every top-level
/// string-typed metadata entry (key → value → clients). A query with a
/// top-level `$eq` against a literal string then visits only the clients
/// holding that value instead of the whole application (BENCHMARKS.md: with
/// 10,000 clients in an application the full scan cost ~1 ms per SEND). The
/// index only narrows: the full query still runs on every client it yields.
/// All metadata changes go through `updateMetadata` (or `touchHeartbeat`)
/// so the index stays true.
///
/// For queries whose ops are all comparisons of a top-level key against a
/// null, boolean or number literal, or `$eq` against a non-SemVer string
/// (`QueryPlan.scalarTests`), an
/// application also keeps columns: one key of every client as a trivial
/// `MetadataScalar`, in `clients` order, plus every client's restricted
/// flag. A query then scans plain arrays (BENCHMARKS.md, issue 13: from
/// ~240 ns per client to a few). Columns are built when a query first needs
/// the key and kept true by every change; at most `maxColumns` per
/// application (16 bytes per client each), the one unused longest is
/// replaced only once `columnIdleQueries` queries went by without it, so
/// queries cycling over many keys cannot make the store rebuild columns on
/// every message.
final class ClientStore {
    /// Columns per application.
    static let maxColumns = QueryPlan.maxScalarTests
    /// A column unused for this many of its application's column queries
    /// may be replaced.
    static let columnIdleQueries: UInt64 = 1024

    /// The clients of one application.
    final class Application {
        let id: String
        // `clients` and `stringIndex` are read by every query, so they are
        // exempt from dynamic exclusivity checking (BENCHMARKS.md, "Checked
        // release build"). No two accesses can overlap: one thread; they
        // are changed only in this file by array/dictionary operations that
        // call out to nothing but String hashing; the one closure run while
        // `clients` is being read (`applications(withTags:)`) only reads.
        @exclusivity(unchecked) fileprivate(set) var clients: [ClientRecord] = []
        fileprivate var byClientID: [String: ClientRecord] = [:]
        /// key → string value → clients holding it.
        @exclusivity(unchecked) fileprivate var stringIndex: [String: [String: [ObjectIdentifier: ClientRecord]]] = [:]
        /// `clients[i].restricted`, densely (read by column scans).
        @exclusivity(unchecked) fileprivate(set) var restrictedFlags: [Bool] = []
        /// Looked up by every column query; exempt from dynamic exclusivity
        /// checking like `clients`: changed only by `column`'s append and
        /// assignment, which call out to nothing.
        @exclusivity(unchecked) fileprivate(set) var columns: [ScalarColumn] = []
        /// Counts column lookups, to age columns.
        private var clock: UInt64 = 0
        /// Columns built so far (each cost a pass over the clients).
        private(set) var columnsBuilt = 0
        init(id: String) { self.id = id }

        /// The column for top-level `key`, built now if missing; nil when
        /// every column slot is taken by a column used recently.
        func column(key: String, hash: UInt64) -> ScalarColumn? {
            clock &+= 1
            for column in columns where column.hash == hash && ExactKey.bytesEqual(column.key, key) {
                column.lastUsed = clock
                return column
            }
            // Which slot the new column takes, decided before building it
            // (O(clients)): a query that gets no slot must not pay for one.
            var slot = columns.count
            if slot == ClientStore.maxColumns {
                var oldest = 0
                for i in columns.indices where columns[i].lastUsed < columns[oldest].lastUsed { oldest = i }
                guard clock - columns[oldest].lastUsed > ClientStore.columnIdleQueries else { return nil }
                slot = oldest
            }
            let built = ScalarColumn(key: key, hash: hash, clients: clients, now: clock)
            columnsBuilt += 1
            if slot == columns.count { columns.append(built) } else { columns[slot] = built }
            return built
        }

        /// Re-reads the record's entries into every column.
        fileprivate func refreshColumns(_ record: ClientRecord) {
            for column in columns { column.update(record, at: record.storeIndex) }
        }

        /// Clients whose top-level `key` is a string entry equal to `value`
        /// (a superset only where Swift's canonical string equality merges
        /// spellings; callers re-check).
        func clients(withKey key: String, value: String) -> Dictionary<ObjectIdentifier, ClientRecord>.Values? {
            stringIndex[key]?[value]?.values
        }

        fileprivate func index(_ record: ClientRecord) {
            for entry in record.metadata.entries where entry.type == .string {
                if case .string(let value) = entry.value {
                    stringIndex[entry.key, default: [:]][value, default: [:]][ObjectIdentifier(record)] = record
                }
            }
        }

        fileprivate func unindex(_ record: ClientRecord) {
            for entry in record.metadata.entries where entry.type == .string {
                if case .string(let value) = entry.value {
                    stringIndex[entry.key]?[value]?[ObjectIdentifier(record)] = nil
                    if stringIndex[entry.key]?[value]?.isEmpty == true { stringIndex[entry.key]?[value] = nil }
                    if stringIndex[entry.key]?.isEmpty == true { stringIndex[entry.key] = nil }
                }
            }
        }
    }

    /// Looked up by every query; exempt from dynamic exclusivity checking
    /// for the reason given on `Application.clients` (changed only by
    /// plain dictionary assignments in this file).
    @exclusivity(unchecked) private(set) var applications: [String: Application] = [:]
    private(set) var subscribers: [ClientRecord] = []
    /// Handles are what peer nodes name our clients by.
    private var byHandle: [UInt64: ClientRecord] = [:]
    private(set) var count = 0
    /// An application lost its last client (the cluster tells its peers,
    /// which may then skip this node for it; additions are announced by the
    /// identify path itself, before READY).
    var onApplicationRemoved: ((String) -> Void)?
    private var nextHandle: UInt64 = 1

    func makeHandle() -> UInt64 {
        defer { nextHandle += 1 }
        return nextHandle
    }

    func find(application: String, client: String) -> ClientRecord? {
        applications[application]?.byClientID[client]
    }

    func application(_ id: String) -> Application? { applications[id] }

    /// The application `query` names, remembered for the query object that
    /// asked last: a repeated SEND target is one cached, shared `Query`
    /// (`QueryCache`), so this saves a String-keyed lookup (a SipHash of
    /// the id) per message. Cleared whenever an application is added or
    /// removed. Holds that one query strongly, so its identity cannot be
    /// reused by another object while remembered.
    func application(of query: Query) -> Application? {
        if let last = lastLookup, last.query === query { return last.app }
        guard let id = query.application else { return nil }
        let app = applications[id]
        lastLookup = (query, app)
        return app
    }
    @exclusivity(unchecked) private var lastLookup: (query: Query, app: Application?)?

    func record(handle: UInt64) -> ClientRecord? { byHandle[handle] }

    func add(_ record: ClientRecord) {
        precondition(!record.isRegistered, "client registered twice")
        let app: Application
        if let existing = applications[record.applicationID] {
            app = existing
        } else {
            app = Application(id: record.applicationID)
            applications[record.applicationID] = app
            lastLookup = nil
        }
        record.storeIndex = app.clients.count
        app.clients.append(record)
        app.restrictedFlags.append(record.restricted)
        for column in app.columns { column.append(record) }
        app.byClientID[record.clientID] = record
        app.index(record)
        byHandle[record.handle] = record
        if record.receivesClientUpdates {
            record.subscriberIndex = subscribers.count
            subscribers.append(record)
        }
        record.isRegistered = true
        count += 1
    }

    /// Removes `record`; returns false if it was not registered (so callers
    /// can make cleanup idempotent).
    @discardableResult
    func remove(_ record: ClientRecord) -> Bool {
        guard record.isRegistered, let app = applications[record.applicationID] else { return false }
        app.unindex(record)
        byHandle[record.handle] = nil
        let index = record.storeIndex
        let last = app.clients.removeLast()
        let lastRestricted = app.restrictedFlags.removeLast()
        if last !== record {
            app.clients[index] = last
            app.restrictedFlags[index] = lastRestricted
            last.storeIndex = index
        }
        for column in app.columns { column.removeSwapping(at: index) }
        if app.byClientID[record.clientID] === record { app.byClientID[record.clientID] = nil }
        if app.clients.isEmpty {
            applications[record.applicationID] = nil
            lastLookup = nil
            onApplicationRemoved?(record.applicationID)
        }
        if record.subscriberIndex >= 0 {
            let i = record.subscriberIndex
            let lastSubscriber = subscribers.removeLast()
            if lastSubscriber !== record {
                subscribers[i] = lastSubscriber
                lastSubscriber.subscriberIndex = i
            }
            record.subscriberIndex = -1
        }
        record.storeIndex = -1
        record.isRegistered = false
        count -= 1
        return true
    }

    /// Changes a client's metadata, keeping the application's index true.
    /// Unregistered records are changed directly.
    func updateMetadata(of record: ClientRecord, _ change: (inout ClientMetadata) -> Void) {
        guard record.isRegistered, let app = applications[record.applicationID] else {
            change(&record.metadata)
            return
        }
        app.unindex(record)
        change(&record.metadata)
        app.index(record)
        app.refreshColumns(record)
    }

    /// Sets the client's `last_heartbeat_time` (an integer: the string
    /// index is unaffected, a column may not be).
    func touchHeartbeat(_ record: ClientRecord, milliseconds: Int64) {
        record.metadata.setReserved(.lastHeartbeatTime, .int(milliseconds))
        record.lastHeartbeatTime = milliseconds
        guard record.isRegistered, let app = applications[record.applicationID] else { return }
        let reserved = ClientMetadata.ReservedKey.lastHeartbeatTime
        for column in app.columns where column.hash == reserved.hash && ExactKey.bytesEqual(column.key, reserved.rawValue) {
            column.setInteger(milliseconds, at: record.storeIndex)
        }
    }

    /// Every registered client (for queries without an application).
    func forEachClient(_ body: (ClientRecord) -> Void) {
        for app in applications.values {
            for record in app.clients { body(record) }
        }
    }

    /// Discovery (rest.md §6, Recommended): applications where at least one
    /// non-restricted client holds every tag in `tags` (extra tags allowed).
    /// A scan of all clients: discovery is an occasional REST call.
    func applications(withTags tags: [String]) -> [String] {
        var out: [String] = []
        for (id, app) in applications {
            if app.clients.contains(where: { record in
                !record.restricted && tags.allSatisfy { tag in record.tags.contains { $0.utf8.elementsEqual(tag.utf8) } }
            }) {
                out.append(id)
            }
        }
        return out
    }
}
