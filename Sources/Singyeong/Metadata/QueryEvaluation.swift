/// Query evaluation (`query.md` §2, §6.3–§6.5). Everything here works on the
/// compiled `Query` and the stored `ClientMetadata` in place: values are
/// only copied (reference-count traffic), strings compared through their
/// UTF-8 views, versions compared on their bytes, so matching a client
/// performs no heap allocation.
extension Query {
    /// §2: application filter, then restricted filter (which always applies,
    /// also under the `optional` fallback). `restricted` is the client's flag.
    func matchesBase(application: String, restricted: Bool) -> Bool {
        if let wanted = self.application, !ClientMetadata.bytesEqual(wanted, application) { return false }
        return includeRestricted || !restricted
    }

    /// §2 using the client's stored `restricted` key.
    func matchesBase(application: String, metadata: ClientMetadata) -> Bool {
        matchesBase(application: application, restricted: metadata.isRestricted)
    }

    /// Whether every op holds (implicit AND; no ops → true).
    func matchesOps(_ metadata: ClientMetadata) -> Bool {
        for op in ops where !op.matches(metadata) { return false }
        return true
    }

    /// Base filter and ops together (what a node's collect step does).
    func matches(application: String, metadata: ClientMetadata) -> Bool {
        matchesBase(application: application, metadata: metadata) && matchesOps(metadata)
    }
}

extension QueryOp {
    /// §6.5; empty `with`: `$and` true, `$or` false, `$nor` true.
    func matches(_ metadata: ClientMetadata) -> Bool {
        switch self {
        case .comparison(let c):
            return c.matches(metadata)
        case .logical(.and, let children):
            for child in children where !child.matches(metadata) { return false }
            return true
        case .logical(.or, let children):
            for child in children where child.matches(metadata) { return true }
            return false
        case .logical(.nor, let children):
            for child in children where child.matches(metadata) { return false }
            return true
        }
    }
}

extension Comparison {
    /// §6.4. The positive operators are false when either side is missing;
    /// the negated ones are their exact complements (hence true then).
    func matches(_ metadata: ClientMetadata) -> Bool {
        let positive: Bool
        if let resolved = path.resolve(in: metadata), let w = operandValue(metadata) {
            let v = resolved.value
            let versionRule = versionRuleCandidate && resolved.topType == .version
            switch op {
            case .eq, .ne:
                positive = ValueComparison.equal(v, w, versionRule: versionRule)
            case .gt:
                positive = (ValueComparison.order(v, w, versionRule: versionRule) ?? 0) > 0
            case .gte:
                positive = ValueComparison.order(v, w, versionRule: versionRule).map { $0 >= 0 } ?? false
            case .lt:
                positive = (ValueComparison.order(v, w, versionRule: versionRule) ?? 0) < 0
            case .lte:
                positive = ValueComparison.order(v, w, versionRule: versionRule).map { $0 <= 0 } ?? false
            case .in, .nin:
                positive = Self.member(v, of: w, versionRule: versionRule)
            case .contains, .ncontains:
                positive = Self.member(w, of: v, versionRule: false)
            }
        } else {
            positive = false
        }
        return op.isNegated ? !positive : positive
    }

    @inline(__always)
    private func operandValue(_ metadata: ClientMetadata) -> Value? {
        switch operand {
        case .literal(let x): return x
        case .path(let p, let fallback): return p.resolve(in: metadata)?.value ?? fallback
        }
    }

    /// `container` is an array with some element equal to `element`.
    private static func member(_ element: Value, of container: Value, versionRule: Bool) -> Bool {
        guard case .array(let items) = container else { return false }
        for item in items where ValueComparison.equal(element, item, versionRule: versionRule) { return true }
        return false
    }
}

/// The value semantics of §6.3: exact numeric comparison across
/// Int64 / UInt64 / Double, strings by UTF-8 bytes (= code points), SemVer
/// precedence under the version rule, no ordering between other types.
enum ValueComparison {
    /// `eq(a, b)`. The version rule (both strings valid SemVer → precedence
    /// equality) applies only at the top level, never inside arrays/objects.
    static func equal(_ a: Value, _ b: Value, versionRule: Bool = false) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            if versionRule, let c = SemanticVersion.compare(x, y) { return c == 0 }
            return ClientMetadata.bytesEqual(x, y)
        case (.bool(let x), .bool(let y)):
            return x == y
        case (.null, .null):
            return true
        case (.array(let x), .array(let y)):
            guard x.count == y.count else { return false }
            for i in x.indices where !equal(x[i], y[i]) { return false }
            return true
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            for (name, value) in x.members {
                guard let other = y[name], equal(value, other) else { return false }
            }
            return true
        default:
            return numeric(a, b) == 0
        }
    }

    /// `cmp(a, b)` as -1 / 0 / 1, or nil where ordering is undefined.
    static func order(_ a: Value, _ b: Value, versionRule: Bool = false) -> Int? {
        if case .string(let x) = a, case .string(let y) = b {
            return versionRule ? SemanticVersion.compare(x, y) : bytewise(x, y)
        }
        return numeric(a, b)
    }

    /// Lexicographic comparison of UTF-8 bytes (Swift's `<` on String is
    /// not bytewise: it compares canonical equivalents).
    static func bytewise(_ a: String, _ b: String) -> Int {
        var i = a.utf8.makeIterator(), j = b.utf8.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let x?, let y?): if x != y { return x < y ? -1 : 1 }
            }
        }
    }

    /// Exact numeric comparison, or nil if either value is not a number (or
    /// is NaN). No conversion that could round: Int64 vs Double compares the
    /// integral parts as integers and then the fraction.
    static func numeric(_ a: Value, _ b: Value) -> Int? {
        switch (a, b) {
        case (.int(let x), .int(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.uint(let x), .uint(let y)): return x == y ? 0 : (x < y ? -1 : 1)
        case (.double(let x), .double(let y)):
            if x.isNaN || y.isNaN { return nil }
            return x == y ? 0 : (x < y ? -1 : 1)
        case (.int(let x), .uint(let y)): return intVsUInt(x, y)
        case (.uint(let x), .int(let y)): return -intVsUInt(y, x)
        case (.int(let x), .double(let y)): return intVsDouble(x, y)
        case (.double(let x), .int(let y)): return intVsDouble(y, x).map { -$0 }
        case (.uint(let x), .double(let y)): return uintVsDouble(x, y)
        case (.double(let x), .uint(let y)): return uintVsDouble(y, x).map { -$0 }
        default: return nil
        }
    }

    private static func intVsUInt(_ x: Int64, _ y: UInt64) -> Int {
        if x < 0 { return -1 }
        let ux = UInt64(x)
        return ux == y ? 0 : (ux < y ? -1 : 1)
    }

    private static func intVsDouble(_ x: Int64, _ d: Double) -> Int? {
        if d.isNaN { return nil }
        if d >= 9223372036854775808.0 { return -1 }      // 2^63 and above (incl. +inf)
        if d < -9223372036854775808.0 { return 1 }       // below -2^63 (incl. -inf)
        let ti = Int64(d)                                // truncates; in range, so exact
        let t = Double(ti)                               // a truncated double: representable
        if x != ti { return x < ti ? -1 : 1 }
        let fraction = d - t                             // exact
        return fraction > 0 ? -1 : (fraction < 0 ? 1 : 0)
    }

    private static func uintVsDouble(_ x: UInt64, _ d: Double) -> Int? {
        if d.isNaN { return nil }
        if d < 0 { return 1 }
        if d >= 18446744073709551616.0 { return -1 }     // 2^64 and above
        let tu = UInt64(d)                               // truncates toward zero
        let t = Double(tu)
        if x != tu { return x < tu ? -1 : 1 }
        let fraction = d - t
        return fraction > 0 ? -1 : 0
    }
}
