/// A routing query (`query.md` §1), parsed and compiled once per message so
/// that evaluating it against each client's metadata allocates nothing:
/// paths are pre-split and pre-unescaped, array indices pre-parsed, literal
/// operands owned by the query, and whether the SemVer rule can apply is
/// decided per comparison at parse time.
///
/// Immutable and a class: the query cache hands the same compiled query to
/// every message with the same target, and passing it along the route
/// (several times per SEND) then costs one reference count, not one per
/// field (issue 13: Query copies were ~12 atomic operations per SEND).
final class Query: Sendable, Equatable {
    /// Only clients of this application; nil = every application.
    let application: String?
    /// The query's `restricted` flag: restricted clients may be selected too.
    let includeRestricted: Bool
    /// Consistent-hashing key (§8); only kept if it was a string.
    let key: String?
    /// Unroutable SEND/BROADCAST is dropped silently (§9).
    let droppable: Bool
    /// If the ops leave no candidate, fall back to the base filter (§9).
    let optional: Bool
    /// Constraints, all of which must hold (implicit AND).
    let ops: [QueryOp]
    /// Derived from `ops`; not part of equality.
    let plan: QueryPlan
    /// Picks one client among the candidates (§7).
    let selector: Selector?

    /// Limits that keep hostile queries from exhausting the stack or CPU.
    /// Depth: top-level ops are level 1, each `with` (or v1 logical array)
    /// adds one. Ops: every comparison and every explicit logical op counts;
    /// the implicit AND that groups a multi-member v1 element does not.
    static let maxDepth = 32
    static let maxOps = 1024

    init(application: String? = nil, includeRestricted: Bool = false, key: String? = nil,
         droppable: Bool = false, optional: Bool = false, ops: [QueryOp] = [], selector: Selector? = nil) {
        self.application = application
        self.includeRestricted = includeRestricted
        self.key = key
        self.droppable = droppable
        self.optional = optional
        self.ops = ops
        self.plan = QueryPlan(ops)
        self.selector = selector
    }

    static func == (lhs: Query, rhs: Query) -> Bool {
        lhs.application == rhs.application && lhs.includeRestricted == rhs.includeRestricted
            && lhs.key == rhs.key && lhs.droppable == rhs.droppable && lhs.optional == rhs.optional
            && lhs.ops == rhs.ops && lhs.selector == rhs.selector
    }

    /// See `QueryPlan.indexableEquality`.
    var indexableEquality: (key: String, value: String)? { plan.indexableEquality }

    /// Parses and compiles a query. `context` names the query in the "must
    /// be an object" detail: `target` for SEND/BROADCAST/QUEUE, `query` for
    /// QUERY_NODES / REST. The error's detail describes the first problem.
    static func parse(_ value: Value, context: String = "target") -> Result<Query, QueryError> {
        do {
            var parser = QueryParser()
            return .success(try parser.query(value, context: context))
        } catch {
            return .failure(error)
        }
    }
}

/// An invalid query; `detail` goes to `extra_info` (gateway) or after
/// `invalid query: ` (REST).
struct QueryError: Error, Sendable, Equatable, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}

/// A compiled op: a comparison or a logical combination.
enum QueryOp: Sendable, Equatable {
    case comparison(Comparison)
    case logical(LogicalOperator, [QueryOp])
}

/// `$and` / `$or` / `$nor`.
enum LogicalOperator: String, Sendable, CaseIterable {
    case and = "$and", or = "$or", nor = "$nor"
}

/// The ten comparison operators; the `n`-prefixed ones and `$ne` are exact
/// complements of their positive counterparts (§6.4).
enum ComparisonOperator: String, Sendable, CaseIterable {
    case eq = "$eq", ne = "$ne", gt = "$gt", gte = "$gte", lt = "$lt", lte = "$lte"
    case `in` = "$in", nin = "$nin", contains = "$contains", ncontains = "$ncontains"

    /// Whether the operator is the complement of another one.
    var isNegated: Bool { self == .ne || self == .nin || self == .ncontains }

    /// `$in` / `$nin`: a literal operand must be an array.
    var needsArrayOperand: Bool { self == .in || self == .nin }
}

/// One compiled comparison `path op operand`.
struct Comparison: Sendable, Equatable {
    let path: MetadataPath
    let op: ComparisonOperator
    let operand: Operand
    /// The path is a single segment, so the SemVer rule applies whenever the
    /// client declared that key as `version` (checked per client).
    let versionRuleCandidate: Bool

    init(path: MetadataPath, op: ComparisonOperator, operand: Operand) {
        self.path = path
        self.op = op
        self.operand = operand
        self.versionRuleCandidate = path.segments.count == 1
    }
}

/// The right-hand side of a comparison (§5).
enum Operand: Sendable, Equatable {
    /// `{"value": X}`.
    case literal(Value)
    /// `{"path": P, "default": D}`: the same client's value at P, else D,
    /// else missing.
    case path(MetadataPath, default: Value?)
}

/// A JSON-pointer-like path into a client's metadata (§4), split and
/// unescaped at parse time.
struct MetadataPath: Sendable, Equatable, CustomStringConvertible {
    /// One step; `index` is the segment read as a canonical array index
    /// (`0` or digits without leading zero, fitting in Int), else -1.
    struct Segment: Sendable, Equatable {
        let name: String
        let index: Int
        /// `ClientMetadata.keyHash(name)`, computed once at compile time so a
        /// top-level lookup compares integers, not strings.
        let hash: UInt64

        init(_ name: String) {
            self.name = name
            self.index = Segment.canonicalIndex(name)
            self.hash = ClientMetadata.keyHash(name)
        }

        private static func canonicalIndex(_ s: String) -> Int {
            var result = 0
            var digits = 0
            for byte in s.utf8 {
                guard byte >= 48 && byte <= 57 else { return -1 }
                if digits == 1 && result == 0 { return -1 }   // leading zero
                let (m, o1) = result.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(byte - 48))
                if o1 || o2 { return -1 }
                result = a
                digits += 1
            }
            return digits == 0 ? -1 : result
        }
    }

    /// Never empty: `/` is one segment named "".
    let segments: [Segment]

    /// Parses `/a/b~1c`: nil for a string that is empty or does not start
    /// with `/`. Segments are unescaped per RFC 6901 (`~1` → `/`, then
    /// `~0` → `~`); other `~` sequences are kept literally.
    init?(parsing text: String) {
        guard text.utf8.first == UInt8(ascii: "/") else { return nil }
        var result: [Segment] = []
        for raw in text.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            result.append(Segment(Self.unescape(raw)))
        }
        segments = result
    }

    /// A path naming exactly one top-level key, taken literally (v1 ops and
    /// selectors name keys, not paths).
    init(topLevelKey: String) {
        segments = [Segment(topLevelKey)]
    }

    /// RFC 6901 unescaping; allocates only for segments that contain `~`.
    private static func unescape(_ raw: Substring.UTF8View.SubSequence) -> String {
        // Decode first, then replace; order matters (`~01` is `~1`, not `/`).
        guard raw.contains(UInt8(ascii: "~")) else { return String(decoding: raw, as: UTF8.self) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let b = raw[i]
            let next = raw.index(after: i)
            if b == UInt8(ascii: "~"), next < raw.endIndex, raw[next] == UInt8(ascii: "1") || raw[next] == UInt8(ascii: "0") {
                bytes.append(raw[next] == UInt8(ascii: "1") ? UInt8(ascii: "/") : UInt8(ascii: "~"))
                i = raw.index(after: next)
            } else {
                bytes.append(b)
                i = next
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The key name if this path is a single segment.
    var topLevelKey: String? { segments.count == 1 ? segments[0].name : nil }

    /// The path re-escaped, for messages and debugging.
    var description: String {
        var s = ""
        for seg in segments {
            s += "/"
            for ch in seg.name.unicodeScalars {
                if ch == "~" { s += "~0" } else if ch == "/" { s += "~1" } else { s.unicodeScalars.append(ch) }
            }
        }
        return s
    }

    /// Walks the metadata (§4): objects by exact member name, arrays by
    /// canonical index, anything else is missing (nil). Also returns the
    /// declared type of the top-level key (for the SemVer rule). Allocates
    /// nothing.
    @inline(__always)
    func resolve(in metadata: ClientMetadata) -> (value: Value, topType: MetadataType)? {
        guard let top = metadata.entry(segments[0].name, hash: segments[0].hash) else { return nil }
        var current = top.value
        var i = 1
        while i < segments.count {
            let seg = segments[i]
            switch current {
            case .object(let object):
                guard let v = object[seg.name] else { return nil }
                current = v
            case .array(let array):
                guard seg.index >= 0 && seg.index < array.count else { return nil }
                current = array[seg.index]
            default:
                return nil
            }
            i += 1
        }
        return (current, top.type)
    }
}

/// Recursive-descent compiler from the JSON query to `Query`, enforcing the
/// nesting and op-count limits and producing §10-style details.
private struct QueryParser {
    /// Ops compiled so far, against `Query.maxOps`.
    var opCount = 0

    mutating func query(_ value: Value, context: String) throws(QueryError) -> Query {
        guard case .object(let object) = value else { throw QueryError(detail: "\(context): must be an object") }
        let application: String?
        switch object["application"] {
        case nil, .null?: application = nil
        case .string(let s)?: application = s
        default: throw QueryError(detail: "application: must be a string or null")
        }
        var key: String?
        if case .string(let k)? = object["key"] { key = k }
        var ops: [QueryOp] = []
        switch object["ops"] {
        case nil, .null?: break
        case .array(let elements)?:
            ops.reserveCapacity(elements.count)
            for (i, element) in elements.enumerated() {
                ops.append(try op(element, at: "ops[\(i)]", depth: 1))
            }
        default: throw QueryError(detail: "ops: must be an array")
        }
        var selector: Selector?
        switch object["selector"] {
        case nil, .null?: break
        case let selectorValue?:
            guard let s = Selector.parse(selectorValue) else {
                throw QueryError(detail: "selector: must be {\"$min\"|\"$max\"|\"$avg\": \"<key>\"}")
            }
            selector = s
        }
        return Query(application: application, includeRestricted: Self.flag(object["restricted"]), key: key,
                     droppable: Self.flag(object["droppable"]), optional: Self.flag(object["optional"]),
                     ops: ops, selector: selector)
    }

    /// `true` or `"true"` → true; anything else false (both eras).
    static func flag(_ value: Value?) -> Bool {
        switch value {
        case .bool(true)?: return true
        case .string(let s)? where s == "true": return true
        default: return false
        }
    }

    mutating func count(at pos: String) throws(QueryError) {
        opCount += 1
        if opCount > Query.maxOps { throw QueryError(detail: "\(pos): more than \(Query.maxOps) ops in query") }
    }

    func checkDepth(_ depth: Int, at pos: String) throws(QueryError) {
        if depth > Query.maxDepth { throw QueryError(detail: "\(pos): nested deeper than \(Query.maxDepth) levels") }
    }

    /// One element of `ops` or of a `with` array: v2 if it has a string
    /// `op` member, else v1 (§3.3).
    mutating func op(_ value: Value, at pos: String, depth: Int) throws(QueryError) -> QueryOp {
        try checkDepth(depth, at: pos)
        guard case .object(let object) = value else { throw QueryError(detail: "\(pos): must be an object") }
        if case .string(let name)? = object["op"] {
            return try v2(object, name: name, at: pos, depth: depth)
        }
        var constraints: [QueryOp] = []
        for (key, spec) in object.members {
            constraints += try v1Spec(key: key, spec, at: "\(pos).\(key)", depth: depth)
        }
        return constraints.count == 1 ? constraints[0] : .logical(.and, constraints)
    }

    mutating func v2(_ object: ValueObject, name: String, at pos: String, depth: Int) throws(QueryError) -> QueryOp {
        if let logical = LogicalOperator(rawValue: name) {
            try count(at: pos)
            guard case .array(let elements)? = object["with"] else { throw QueryError(detail: "\(pos).with: must be an array") }
            var children: [QueryOp] = []
            children.reserveCapacity(elements.count)
            for (i, element) in elements.enumerated() {
                children.append(try op(element, at: "\(pos).with[\(i)]", depth: depth + 1))
            }
            return .logical(logical, children)
        }
        guard let comparison = ComparisonOperator(rawValue: name) else {
            throw QueryError(detail: "\(pos): unknown op \(name)")
        }
        try count(at: pos)
        let path = try Self.path(object["path"], at: "\(pos).path")
        guard case .object(let to)? = object["to"] else {
            throw QueryError(detail: "\(pos).to: must be an object with value or path")
        }
        let operand: Operand
        if let literal = to["value"] {
            if comparison.needsArrayOperand, !Self.isArray(literal) {
                throw QueryError(detail: "\(pos): \(name) needs an array value")
            }
            operand = .literal(literal)
        } else if let p = to["path"] {
            operand = .path(try Self.path(p, at: "\(pos).to.path"), default: to["default"])
        } else {
            throw QueryError(detail: "\(pos).to: must be an object with value or path")
        }
        return .comparison(Comparison(path: path, op: comparison, operand: operand))
    }

    /// Translates a v1 `{opname: operand, ...}` for top-level key `key` into
    /// its constraints (implicitly ANDed by the caller).
    mutating func v1Spec(key: String, _ spec: Value, at pos: String, depth: Int) throws(QueryError) -> [QueryOp] {
        try checkDepth(depth, at: pos)
        guard case .object(let members) = spec else { throw QueryError(detail: "\(pos): must be an object") }
        var result: [QueryOp] = []
        result.reserveCapacity(members.count)
        for (name, operand) in members.members {
            if let comparison = ComparisonOperator(rawValue: name) {
                try count(at: pos)
                if comparison.needsArrayOperand, !Self.isArray(operand) {
                    throw QueryError(detail: "\(pos): \(name) needs an array value")
                }
                result.append(.comparison(Comparison(path: MetadataPath(topLevelKey: key), op: comparison, operand: .literal(operand))))
            } else if let logical = LogicalOperator(rawValue: name) {
                try count(at: pos)
                guard case .array(let elements) = operand else { throw QueryError(detail: "\(pos).\(name): must be an array") }
                var children: [QueryOp] = []
                children.reserveCapacity(elements.count)
                for (i, element) in elements.enumerated() {
                    let inner = try v1Spec(key: key, element, at: "\(pos).\(name)[\(i)]", depth: depth + 1)
                    children.append(inner.count == 1 ? inner[0] : .logical(.and, inner))
                }
                result.append(.logical(logical, children))
            } else {
                throw QueryError(detail: "\(pos): unknown op \(name)")
            }
        }
        return result
    }

    /// A path member: present, a string, starting with `/` (§4).
    static func path(_ value: Value?, at pos: String) throws(QueryError) -> MetadataPath {
        guard let value else { throw QueryError(detail: "\(pos): missing") }
        guard case .string(let text) = value else { throw QueryError(detail: "\(pos): must be a string") }
        guard let path = MetadataPath(parsing: text) else { throw QueryError(detail: "\(pos): must start with `/`") }
        return path
    }

    static func isArray(_ value: Value) -> Bool {
        if case .array = value { return true }
        return false
    }
}
