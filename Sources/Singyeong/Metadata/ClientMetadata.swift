/// The metadata of one connected client: what queries are evaluated
/// against. Entries keep insertion order (so QUERY_NODES / REST output is
/// stable) and each carries its declared type (the SemVer rule needs it).
///
/// The server-set reserved keys (`protocol.md` §4.6) live in the same list
/// and are queryable like any other key; clients can never set them
/// (`MetadataUpdate.validate` rejects them) and `replace` keeps them.
///
/// Lookup is a linear scan: metadata is small, keys must match exactly (no
/// Unicode normalisation, unlike `String ==`), and a scan allocates nothing,
/// which query evaluation relies on. Each entry carries a hash of its key, so
/// the scan compares integers and touches a key's bytes only on a hash match
/// (measured: comparing the strings themselves, with their reference-count
/// traffic, dominated SEND cost with 10,000 clients in one application).
/// Past `indexThreshold` keys a hash index takes over, so storing n keys
/// costs O(n) rather than O(n²) (a hostile IDENTIFY with tens of thousands of
/// keys must not stall the loop; the keys budget bounds n anyway).
struct ClientMetadata: Sendable, Equatable {
    /// One stored key.
    struct Entry: Sendable, Equatable {
        let key: String
        let keyHash: UInt64
        var type: MetadataType
        var value: Value
        /// Stored size for the budget (`MetadataBudget.entryCost`); 0 for
        /// reserved keys, which the server sets and the budget leaves out.
        var cost: Int

        init(key: String, type: MetadataType, value: Value, cost: Int) {
            self.key = key
            self.keyHash = ClientMetadata.keyHash(key)
            self.type = type
            self.value = value
            self.cost = cost
        }
    }

    /// FNV-1a 64 of a key's UTF-8 bytes (the hash query.md §8 uses).
    @inline(__always)
    static func keyHash(_ key: String) -> UInt64 { KeyHash.fnv1a64(key) }

    /// The server-set keys, with the type each is stored under.
    enum ReservedKey: String, Sendable, CaseIterable {
        case lastHeartbeatTime = "last_heartbeat_time"
        case ip
        case restricted
        case encoding
        case namespace
        case receiveClientUpdates = "receive_client_updates"

        /// `ip` and `namespace` are `string` typed but may hold `.null`;
        /// `receive_client_updates` is `boolean` (the original said `string`).
        var type: MetadataType {
            switch self {
            case .lastHeartbeatTime: return .integer
            case .ip, .encoding, .namespace: return .string
            case .restricted, .receiveClientUpdates: return .boolean
            }
        }

        /// `keyHash(rawValue)`, computed once: the heartbeat time is read on
        /// every frame (protocol.md §5.2), and hashing its 19 bytes there
        /// cost ~640 instructions per SEND (callgrind).
        var hash: UInt64 {
            switch self {
            case .lastHeartbeatTime: return ReservedKey.hashes.lastHeartbeatTime
            case .ip: return ReservedKey.hashes.ip
            case .restricted: return ReservedKey.hashes.restricted
            case .encoding: return ReservedKey.hashes.encoding
            case .namespace: return ReservedKey.hashes.namespace
            case .receiveClientUpdates: return ReservedKey.hashes.receiveClientUpdates
            }
        }

        private static let hashes = (
            lastHeartbeatTime: ClientMetadata.keyHash(ReservedKey.lastHeartbeatTime.rawValue),
            ip: ClientMetadata.keyHash(ReservedKey.ip.rawValue),
            restricted: ClientMetadata.keyHash(ReservedKey.restricted.rawValue),
            encoding: ClientMetadata.keyHash(ReservedKey.encoding.rawValue),
            namespace: ClientMetadata.keyHash(ReservedKey.namespace.rawValue),
            receiveClientUpdates: ClientMetadata.keyHash(ReservedKey.receiveClientUpdates.rawValue)
        )
    }

    /// Names clients may not set (`protocol.md` §7.2).
    static let reservedKeys: [String] = ReservedKey.allCases.map(\.rawValue)

    /// Whether `key` is one of `reservedKeys` (exact bytes).
    static func isReserved(_ key: String) -> Bool {
        reservedKey(named: key) != nil
    }

    /// The reserved key spelled exactly `key`, if any.
    static func reservedKey(named key: String) -> ReservedKey? {
        for reserved in ReservedKey.allCases where bytesEqual(reserved.rawValue, key) { return reserved }
        return nil
    }

    /// All entries, reserved ones included, in insertion order.
    private(set) var entries: [Entry] = []
    /// Position of every key, present exactly when `count > indexThreshold`.
    private var positions: [ExactKey: Int]?

    /// Up to this many keys the hash-filtered scan is cheaper than hashing.
    static let indexThreshold = 16

    static func == (lhs: ClientMetadata, rhs: ClientMetadata) -> Bool { lhs.entries == rhs.entries }

    init() {}

    /// Number of stored keys, reserved ones included.
    var count: Int { entries.count }
    /// Keys the client set (reserved ones excluded).
    private(set) var clientKeyCount = 0
    /// Summed `cost` of the keys the client set.
    private(set) var clientCost = 0

    /// Type and value stored under `key`, or nil if absent.
    @inline(__always)
    func entry(_ key: String) -> (type: MetadataType, value: Value)? {
        entry(key, hash: Self.keyHash(key))
    }

    /// The same with the key's hash precomputed (compiled query paths).
    @inline(__always)
    func entry(_ key: String, hash: UInt64) -> (type: MetadataType, value: Value)? {
        guard let i = index(of: key, hash: hash) else { return nil }
        return (entries[i].type, entries[i].value)
    }

    /// Whether the entry under `key` is a string with exactly the bytes of
    /// `text`. Read in place: no copy of the entry (column confirmations
    /// run it per candidate).
    func holdsString(_ text: String, key: String, hash: UInt64) -> Bool {
        guard let i = index(of: key, hash: hash) else { return false }
        return entries.withUnsafeBufferPointer { buffer in
            if case .string(let stored) = buffer[i].value { return Self.bytesEqual(stored, text) }
            return false
        }
    }

    /// The value stored under `key`, or nil if absent.
    func value(_ key: String) -> Value? {
        guard let i = index(of: key) else { return nil }
        return entries[i].value
    }

    /// The value of a server-set key, or nil if absent.
    func value(_ key: ReservedKey) -> Value? {
        guard let i = index(of: key.rawValue, hash: key.hash) else { return nil }
        return entries[i].value
    }

    /// The client's restricted flag as stored (false if never set).
    var isRestricted: Bool {
        if case .bool(true)? = value(.restricted) { return true }
        return false
    }

    /// Position of `key`.
    func index(of key: String) -> Int? {
        index(of: key, hash: Self.keyHash(key))
    }

    /// Position of `key` given its hash: integer comparisons, and the bytes
    /// only on a hash match.
    func index(of key: String, hash: UInt64) -> Int? {
        if let positions { return positions[ExactKey(key)] }
        return entries.withUnsafeBufferPointer { buffer in
            for i in 0..<buffer.count where buffer[i].keyHash == hash {
                if Self.bytesEqual(buffer[i].key, key) { return i }
            }
            return nil
        }
    }

    /// Stores a server-set key. The caller supplies a value of the key's type
    /// (`.null` allowed for `ip` / `namespace`); this is not validated.
    mutating func setReserved(_ key: ReservedKey, _ value: Value) {
        set(key.rawValue, hash: key.hash, type: key.type, value: value, cost: 0)
    }

    /// Stores all reserved keys at once, as identify does (`protocol.md` §4.6):
    /// called after the initial metadata was applied, so reserved keys win.
    mutating func setReserved(lastHeartbeatTime: Int64, restricted: Bool, encoding: String,
                              ip: String?, namespace: String?, receiveClientUpdates: Bool) {
        setReserved(.lastHeartbeatTime, .int(lastHeartbeatTime))
        setReserved(.ip, ip.map(Value.string) ?? .null)
        setReserved(.restricted, .bool(restricted))
        setReserved(.encoding, .string(encoding))
        setReserved(.namespace, namespace.map(Value.string) ?? .null)
        setReserved(.receiveClientUpdates, .bool(receiveClientUpdates))
    }

    /// Metadata as another node holds it for one of its clients, entry by
    /// entry (reserved keys included), so this node can evaluate queries
    /// against it (a queue's consumer waiting from another node). Entries
    /// cost nothing here: the client's own node keeps its budget.
    init(entries: [(key: String, type: MetadataType, value: Value)]) {
        for e in entries { set(e.key, type: e.type, value: e.value, cost: 0) }
    }

    /// Takes every reserved key's value from `other` (a projected copy made
    /// before a heartbeat must not turn the heartbeat time back).
    mutating func copyReserved(from other: ClientMetadata) {
        for key in ReservedKey.allCases {
            if let value = other.value(key) { setReserved(key, value) }
        }
    }

    /// Overwrites in place (keeping the key's position) or appends.
    private mutating func set(_ key: String, hash: UInt64? = nil, type: MetadataType, value: Value, cost: Int) {
        if let i = index(of: key, hash: hash ?? Self.keyHash(key)) {
            entries[i].type = type
            entries[i].value = value
            clientCost += cost - entries[i].cost
            entries[i].cost = cost
        } else {
            entries.append(Entry(key: key, type: type, value: value, cost: cost))
            if !Self.isReserved(key) {
                clientKeyCount += 1
                clientCost += cost
            }
            if positions != nil {
                positions![ExactKey(key)] = entries.count - 1
            } else if entries.count > Self.indexThreshold {
                rebuildIndex()
            }
        }
    }

    private mutating func rebuildIndex() {
        guard entries.count > Self.indexThreshold else {
            positions = nil
            return
        }
        var built: [ExactKey: Int] = [:]
        built.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() { built[ExactKey(entry.key)] = i }
        positions = built
    }

    /// Applies a validated update (`protocol.md` §7.4). `.merge` overwrites
    /// the incoming keys and keeps the rest; `.replace` drops every
    /// non-reserved key first. Reserved keys in the update (impossible after
    /// validation) are skipped defensively.
    mutating func apply(_ update: MetadataUpdate, strategy: MetadataUpdateStrategy) {
        if strategy == .replace {
            entries.removeAll { !Self.isReserved($0.key) }
            clientKeyCount = 0
            clientCost = 0
            rebuildIndex()
        }
        for e in update.entries where !Self.isReserved(e.key) {
            set(e.key, type: e.type, value: e.value, cost: e.cost)
        }
    }

    /// The metadata as a JSON-like object (QUERY_NODES / REST output).
    var objectValue: Value {
        var object = ValueObject()
        for e in entries { object[e.key] = e.value }
        return .object(object)
    }

    /// The declared types as `{key: "type"}`.
    var typesValue: Value {
        var object = ValueObject()
        for e in entries { object[e.key] = .string(e.type.rawValue) }
        return .object(object)
    }

    /// Exact UTF-8 equality; `String ==` would equate canonically equivalent
    /// spellings (`é` vs `e\u{301}`), which keys and values must not.
    @inline(__always)
    static func bytesEqual(_ a: String, _ b: String) -> Bool {
        ExactKey.bytesEqual(a, b)
    }
}

/// How an UPDATE_METADATA is applied (setting `metadata.update_strategy`).
enum MetadataUpdateStrategy: String, Sendable {
    case merge
    case replace
}
