/// A query's selector (`query.md` §7): picks one client among the
/// candidates by a numeric metadata value. The key names a top-level key;
/// extension: a key starting with `/` is a path.
enum Selector: Sendable, Equatable {
    case min(MetadataPath)
    case max(MetadataPath)
    case avg(MetadataPath)

    /// Accepts exactly `{"$min"|"$max"|"$avg": "<key>"}`; nil otherwise.
    static func parse(_ value: Value) -> Selector? {
        guard case .object(let object) = value, object.count == 1,
              let (name, member) = object.members.first(where: { _ in true }),
              case .string(let key) = member else { return nil }
        let path = key.utf8.first == UInt8(ascii: "/")
            ? (MetadataPath(parsing: key) ?? MetadataPath(topLevelKey: key))
            : MetadataPath(topLevelKey: key)
        switch name {
        case "$min": return .min(path)
        case "$max": return .max(path)
        case "$avg": return .avg(path)
        default: return nil
        }
    }

    var path: MetadataPath {
        switch self {
        case .min(let p), .max(let p), .avg(let p): return p
        }
    }

    /// The value a candidate contributes (what a remote node must send back
    /// for the selector to run on the routing node).
    func value(in metadata: ClientMetadata) -> Value? {
        path.resolve(in: metadata)?.value
    }

    /// Index of the chosen candidate among `count`, given each candidate's
    /// selector value (nil = missing). Only numbers take part; `$avg` picks
    /// the value closest to the mean; ties are broken uniformly at random
    /// (reservoir sampling, one pass, no allocation); if no candidate is
    /// numeric one is picked uniformly at random; nil only when `count` is 0.
    func choose<R: RandomNumberGenerator>(among count: Int, value: (Int) -> Value?, using rng: inout R) -> Int? {
        guard count > 0 else { return nil }
        var mean = 0.0
        if case .avg = self {
            // Running mean: no overflow for large values.
            var n = 0.0
            for i in 0..<count {
                guard let x = value(i).flatMap(Self.number) else { continue }
                n += 1
                mean += (x - mean) / n
            }
        }
        var chosen = -1
        var best: Value = .null
        var bestDistance = 0.0
        var ties = 0
        for i in 0..<count {
            guard let v = value(i), v.isNumber else { continue }
            let c: Int
            if chosen < 0 {
                c = -1
            } else {
                switch self {
                case .min: c = ValueComparison.numeric(v, best) ?? 1
                case .max: c = -(ValueComparison.numeric(v, best) ?? -1)
                case .avg:
                    let d = abs(Self.number(v)! - mean)
                    c = d < bestDistance ? -1 : (d == bestDistance ? 0 : 1)
                }
            }
            if c < 0 {
                chosen = i
                best = v
                if case .avg = self { bestDistance = abs(Self.number(v)! - mean) }
                ties = 1
            } else if c == 0 {
                ties += 1
                if Int.random(in: 0..<ties, using: &rng) == 0 { chosen = i }
            }
        }
        if chosen >= 0 { return chosen }
        return Int.random(in: 0..<count, using: &rng)
    }

    /// Convenience over stored metadata.
    func choose<R: RandomNumberGenerator>(among candidates: [ClientMetadata], using rng: inout R) -> Int? {
        choose(among: candidates.count, value: { value(in: candidates[$0]) }, using: &rng)
    }

    private static func number(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        case .double(let d): return d
        default: return nil
        }
    }
}
