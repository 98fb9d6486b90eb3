/// Shared by the JSON and MessagePack fuzz targets: compares decoded
/// values exactly (doubles by bit pattern, object members by name).

/// A comparable form: doubles by bit pattern, object members sorted.
indirect enum Canon: Equatable {
    case null, bool(Bool), int(Int64), uint(UInt64), double(UInt64), string([UInt8]), array([Canon]), object([([UInt8], Canon)])
    static func == (a: Canon, b: Canon) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.uint(x), .uint(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

func canonical(_ v: Value) -> Canon {
    switch v {
    case .null: return .null
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .uint(let u): return .uint(u)
    case .double(let d): return .double(d.bitPattern)
    case .string(let s): return .string(Array(s.utf8))
    case .array(let a): return .array(a.map(canonical))
    case .object(let o):
        return .object(o.members.map { (Array($0.0.utf8), canonical($0.1)) }.sorted { $0.0.lexicographicallyPrecedes($1.0) })
    }
}
