/// The node's identified clients, grouped by application so a query touches
/// only its application's clients.
///
/// Each application keeps a dense array (cache-friendly evaluation, O(1)
/// swap-remove) plus an id → index map for the duplicate check. Subscribers
/// of client updates are kept in their own dense array so CLIENT_CONNECTED
/// does not scan every client.
final class ClientStore {
    /// The clients of one application.
    final class Application {
        let id: String
        fileprivate(set) var clients: [ClientRecord] = []
        fileprivate var byClientID: [String: ClientRecord] = [:]
        init(id: String) { self.id = id }
    }

    private(set) var applications: [String: Application] = [:]
    private(set) var subscribers: [ClientRecord] = []
    private(set) var count = 0
    private var nextHandle: UInt64 = 1

    func makeHandle() -> UInt64 {
        defer { nextHandle += 1 }
        return nextHandle
    }

    func find(application: String, client: String) -> ClientRecord? {
        applications[application]?.byClientID[client]
    }

    func application(_ id: String) -> Application? { applications[id] }

    func add(_ record: ClientRecord) {
        precondition(!record.isRegistered, "client registered twice")
        let app: Application
        if let existing = applications[record.applicationID] {
            app = existing
        } else {
            app = Application(id: record.applicationID)
            applications[record.applicationID] = app
        }
        record.storeIndex = app.clients.count
        app.clients.append(record)
        app.byClientID[record.clientID] = record
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
        let index = record.storeIndex
        let last = app.clients.removeLast()
        if last !== record {
            app.clients[index] = last
            last.storeIndex = index
        }
        if app.byClientID[record.clientID] === record { app.byClientID[record.clientID] = nil }
        if app.clients.isEmpty { applications[record.applicationID] = nil }
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

    /// Every registered client (for queries without an application).
    func forEachClient(_ body: (ClientRecord) -> Void) {
        for app in applications.values {
            for record in app.clients { body(record) }
        }
    }
}
