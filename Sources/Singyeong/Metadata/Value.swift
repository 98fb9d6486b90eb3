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
/// last value, as JSON decoders conventionally do). Metadata objects are
/// small, so lookup is a linear scan comparing UTF-8 bytes.
struct ValueObject: Equatable, Sendable {
    private(set) var names: [String] = []
    private(set) var values: [Value] = []

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
                if let newValue { values[i] = newValue } else { names.remove(at: i); values.remove(at: i) }
            } else if let newValue {
                names.append(name)
                values.append(newValue)
            }
        }
    }

    func index(of name: String) -> Int? {
        // Byte comparison: keys match exactly, with no Unicode normalisation.
        names.firstIndex { $0.utf8.elementsEqual(name.utf8) }
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
