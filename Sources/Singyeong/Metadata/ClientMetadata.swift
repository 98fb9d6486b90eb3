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
struct ClientMetadata: Sendable, Equatable {
    /// One stored key.
    struct Entry: Sendable, Equatable {
        let key: String
        let keyHash: UInt64
        var type: MetadataType
        var value: Value

        init(key: String, type: MetadataType, value: Value) {
            self.key = key
            self.keyHash = ClientMetadata.keyHash(key)
            self.type = type
            self.value = value
        }
    }

    /// FNV-1a 64 of a key's UTF-8 bytes.
    static func keyHash(_ key: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

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

    init() {}

    /// Number of stored keys, reserved ones included.
    var count: Int { entries.count }

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

    /// The value stored under `key`, or nil if absent.
    func value(_ key: String) -> Value? {
        guard let i = index(of: key) else { return nil }
        return entries[i].value
    }

    /// The client's restricted flag as stored (false if never set).
    var isRestricted: Bool {
        if case .bool(true)? = value(ReservedKey.restricted.rawValue) { return true }
        return false
    }

    /// Position of `key`.
    func index(of key: String) -> Int? {
        index(of: key, hash: Self.keyHash(key))
    }

    /// Position of `key` given its hash: integer comparisons, and the bytes
    /// only on a hash match.
    func index(of key: String, hash: UInt64) -> Int? {
        entries.withUnsafeBufferPointer { buffer in
            for i in 0..<buffer.count where buffer[i].keyHash == hash {
                if Self.bytesEqual(buffer[i].key, key) { return i }
            }
            return nil
        }
    }

    /// Stores a server-set key. The caller supplies a value of the key's type
    /// (`.null` allowed for `ip` / `namespace`); this is not validated.
    mutating func setReserved(_ key: ReservedKey, _ value: Value) {
        set(key.rawValue, type: key.type, value: value)
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

    /// Overwrites in place (keeping the key's position) or appends.
    private mutating func set(_ key: String, type: MetadataType, value: Value) {
        if let i = index(of: key) {
            entries[i].type = type
            entries[i].value = value
        } else {
            entries.append(Entry(key: key, type: type, value: value))
        }
    }

    /// Applies a validated update (`protocol.md` §7.4). `.merge` overwrites
    /// the incoming keys and keeps the rest; `.replace` drops every
    /// non-reserved key first. Reserved keys in the update (impossible after
    /// validation) are skipped defensively.
    mutating func apply(_ update: MetadataUpdate, strategy: MetadataUpdateStrategy) {
        if strategy == .replace {
            entries.removeAll { !Self.isReserved($0.key) }
        }
        for e in update.entries where !Self.isReserved(e.key) {
            set(e.key, type: e.type, value: e.value)
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
    ///
    /// Compares the contiguous UTF-8 buffers (every native string has one)
    /// rather than walking `String.UTF8View` indices: that walk was the
    /// largest single cost of SEND (BENCHMARKS.md, "Checked release build").
    @inline(__always)
    static func bytesEqual(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        let fast = a.utf8.withContiguousStorageIfAvailable { x in
            b.utf8.withContiguousStorageIfAvailable { y in sameBytes(x, y) }
        }
        if let fast, let equal = fast { return equal }
        return a.utf8.elementsEqual(b.utf8)
    }

    /// Eight bytes at a time, then the rest. Every load is inside both
    /// buffers: they have the same count (checked first), and each load
    /// covers `i..<i + 8` with `i + 8 <= n`, or the single byte `i < n`.
    @inline(__always)
    private static func sameBytes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = x.count
        guard n == y.count else { return false }
        guard n > 0, let p = x.baseAddress, let q = y.baseAddress else { return true }
        let rp = UnsafeRawPointer(p), rq = UnsafeRawPointer(q)
        var i = 0
        while i + 8 <= n {
            if rp.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rq.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if p[i] != q[i] { return false }
            i += 1
        }
        return true
    }
}

/// How an UPDATE_METADATA is applied (setting `metadata.update_strategy`).
enum MetadataUpdateStrategy: String, Sendable {
    case merge
    case replace
}
