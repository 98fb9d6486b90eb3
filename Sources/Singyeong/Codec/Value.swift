/// A decoded JSON or MessagePack value that the server keeps or inspects:
/// metadata values, query operands, identify fields.
///
/// Payloads are never turned into `Value`s: they are forwarded as the bytes
/// they arrived as (or transcoded from the decoder's tape). Integers and
/// floats stay distinct (metadata types depend on it) and 64-bit integers are
/// exact: `int` holds everything in Int64, `uint` only what lies above
/// Int64.max.
enum Value: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([Value])
    case object(ValueObject)
}

/// Object members in arrival order, names unique (a repeated name keeps the
/// last value, as JSON decoders conventionally do).
///
/// Small objects (metadata entries, query operators) are looked up by a
/// linear scan comparing UTF-8 bytes, which allocates nothing. Past
/// `indexThreshold` members a hash index is built, so decoding an object of n
/// members costs O(n), not O(n²): a frame with 100,000 distinct keys must not
/// stall the loop (issue 10). The index hashes with the standard library's
/// per-process seeded SipHash, so keys chosen to collide cannot degrade it.
struct ValueObject: Equatable, Sendable {
    private(set) var names: [String] = []
    private(set) var values: [Value] = []
    /// Position of every name, present exactly when `count > indexThreshold`.
    private var positions: [ExactKey: Int]?

    /// Up to this many members a scan beats hashing.
    static let indexThreshold = 8

    init() {}

    init(_ members: [(String, Value)]) {
        for (name, value) in members { self[name] = value }
    }

    var count: Int { names.count }
    var isEmpty: Bool { names.isEmpty }

    subscript(name: String) -> Value? {
        get { index(of: name).map { values[$0] } }
        set {
            if let i = index(of: name) {
                if let newValue {
                    values[i] = newValue
                } else {
                    names.remove(at: i)
                    values.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                names.append(name)
                values.append(newValue)
                if positions != nil {
                    positions![ExactKey(name)] = names.count - 1
                } else if names.count > Self.indexThreshold {
                    rebuildIndex()
                }
            }
        }
    }

    func index(of name: String) -> Int? {
        if let positions { return positions[ExactKey(name)] }
        // Byte comparison: keys match exactly, with no Unicode normalisation.
        return names.firstIndex { ExactKey.bytesEqual($0, name) }
    }

    private mutating func rebuildIndex() {
        guard names.count > Self.indexThreshold else {
            positions = nil
            return
        }
        var built: [ExactKey: Int] = [:]
        built.reserveCapacity(names.count)
        for (i, name) in names.enumerated() { built[ExactKey(name)] = i }
        positions = built
    }

    /// Members in order.
    var members: Zip2Sequence<[String], [Value]> { zip(names, values) }

    /// Equality ignores member order.
    static func == (lhs: ValueObject, rhs: ValueObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (name, value) in lhs.members where rhs[name] != value { return false }
        return true
    }
}

/// A string compared and hashed by its exact UTF-8 bytes. `String`'s own
/// `==` and hash treat canonically equivalent spellings (`é` vs `e\u{301}`)
/// as one key, which metadata keys and JSON member names must not.
struct ExactKey: Hashable, Sendable {
    let string: String

    init(_ string: String) { self.string = string }

    static func == (lhs: ExactKey, rhs: ExactKey) -> Bool { bytesEqual(lhs.string, rhs.string) }

    func hash(into hasher: inout Hasher) {
        let utf8 = string.utf8
        hasher.combine(utf8.count)
        if utf8.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            for byte in utf8 { hasher.combine(byte) }
        }
    }

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

extension Value {
    /// Whether the value is a number (int, uint or double).
    var isNumber: Bool {
        switch self {
        case .int, .uint, .double: return true
        default: return false
        }
    }

    /// The JSON type name, for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .uint: return "integer"
        case .double: return "float"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
