/// A metadata value reduced to what a comparison against a null, boolean,
/// number or plain string literal needs: its kind and, for scalars, its
/// bits (for a string, a hash of its bytes). Trivial (no
/// reference counting), so the store can keep one per client in a dense
/// column and a query can scan 10,000 clients as 160 KB of plain memory
/// (issue 13: evaluating `ClientMetadata` in place cost ~240 ns per client,
/// mostly pointer chasing and reference counting).
///
/// Arrays and objects are `other`: against a scalar literal they never
/// compare equal and have no order (query.md §6.3), so the kind alone
/// decides such a comparison; the same holds for strings against a
/// non-string literal.
struct MetadataScalar: Sendable, Equatable {
    enum Kind: UInt8, Sendable {
        case missing, null, bool, int, uint, double, string, other
    }

    /// `int`: the Int64's bit pattern; `uint`: the value; `double`: its bit
    /// pattern; `bool`: 0 or 1; `string`: `ClientMetadata.keyHash` of its
    /// bytes; otherwise 0.
    let bits: UInt64
    let kind: Kind

    static let missing = MetadataScalar(kind: .missing, bits: 0)

    private init(kind: Kind, bits: UInt64) {
        self.kind = kind
        self.bits = bits
    }

    /// `nil` is a missing key.
    init(_ value: Value?) {
        switch value {
        case nil: self = .missing
        case .null?: self.init(kind: .null, bits: 0)
        case .bool(let b)?: self.init(kind: .bool, bits: b ? 1 : 0)
        case .int(let i)?: self.init(kind: .int, bits: UInt64(bitPattern: i))
        case .uint(let u)?: self.init(kind: .uint, bits: u)
        case .double(let d)?: self.init(kind: .double, bits: d.bitPattern)
        case .string(let text)?: self.init(kind: .string, bits: ClientMetadata.keyHash(text))
        case .array?, .object?: self.init(kind: .other, bits: 0)
        }
    }

    /// The value again, for the scalar kinds (no allocation: every payload
    /// is trivial); nil for `missing`, `string` and `other`.
    var value: Value? {
        switch kind {
        case .missing, .string, .other: return nil
        case .null: return .null
        case .bool: return .bool(bits != 0)
        case .int: return .int(Int64(bitPattern: bits))
        case .uint: return .uint(bits)
        case .double: return .double(Double(bitPattern: bits))
        }
    }
}

/// One comparison of a top-level key against a null, boolean or number
/// literal, or an `$eq` against a string that is not SemVer, evaluated on a
/// `MetadataScalar`: exactly what `Comparison.matches` answers for that
/// client (QueryColumnTests proves it over a table of stored values,
/// literals and operators), except that a string `$eq` compares hashes, so
/// its hits must be confirmed on the bytes (`needsConfirmation`, `confirm`).
///
/// An integer literal against an integer entry, the common case, is a range
/// check on Int64 with the operator folded into the bounds at compile time.
///
/// Trivial, like the scalars it reads: copying one costs no reference
/// counting. The key's name and a string literal's bytes, needed only to
/// find the column and to confirm, stay in the `QueryPlan`.
struct ScalarTest: Sendable, Equatable {
    /// `ClientMetadata.keyHash` of the key.
    let hash: UInt64
    let op: ComparisonOperator
    /// The literal; for a string, kind `string` with its hash.
    let literal: MetadataScalar
    /// For an integer literal: an integer entry satisfies the positive
    /// operator exactly when it lies in `low...high` (never when
    /// `low > high`).
    private let low: Int64
    private let high: Int64
    private let integerLiteral: Bool
    private let negated: Bool
    /// A string `$eq`: a hit is only a hash match until `confirm`ed.
    let needsConfirmation: Bool

    /// nil unless `comparison` is a single-segment path against a null,
    /// boolean or number literal with an operator other than the array
    /// ones (`$in`, `$nin`, `$contains`, `$ncontains`), or an `$eq` against
    /// a string literal that is not SemVer (so the version rule cannot
    /// apply: a `version` entry always holds SemVer, see `QueryPlan`).
    init?(_ comparison: Comparison) {
        guard comparison.path.segments.count == 1, case .literal(let literal) = comparison.operand else { return nil }
        switch comparison.op {
        case .eq, .ne, .gt, .gte, .lt, .lte: break
        case .in, .nin, .contains, .ncontains: return nil
        }
        switch literal {
        case .null, .bool, .int, .uint, .double:
            needsConfirmation = false
        case .string(let text):
            guard comparison.op == .eq, !SemanticVersion.isValid(text) else { return nil }
            needsConfirmation = true
        case .array, .object: return nil
        }
        hash = comparison.path.segments[0].hash
        op = comparison.op
        negated = op.isNegated
        self.literal = MetadataScalar(literal)
        var lo: Int64 = 1, hi: Int64 = 0
        if case .int(let w) = literal {
            integerLiteral = true
            (lo, hi) = (.min, .max)
            switch op {
            case .eq, .ne: (lo, hi) = (w, w)
            case .gt: if w == .max { (lo, hi) = (1, 0) } else { lo = w + 1 }
            case .gte: lo = w
            case .lt: if w == .min { (lo, hi) = (1, 0) } else { hi = w - 1 }
            case .lte: hi = w
            case .in, .nin, .contains, .ncontains: (lo, hi) = (1, 0)
            }
        } else {
            integerLiteral = false
        }
        low = lo
        high = hi
    }

    /// The integer case as bounds, for a scan specialised to it: an integer
    /// entry matches exactly when `(low...high).contains(x) != negated`.
    var integerRange: (low: Int64, high: Int64, negated: Bool)? {
        integerLiteral ? (low, high, negated) : nil
    }

    /// Whether a client whose entry under `key` is `scalar` satisfies the
    /// comparison.
    @inline(__always)
    func matches(_ scalar: MetadataScalar) -> Bool {
        switch scalar.kind {
        case .int where integerLiteral:
            let x = Int64(bitPattern: scalar.bits)
            return (x >= low && x <= high) != negated
        case .missing, .other:
            return negated      // the positive operator is false (§6.4)
        case .string:
            // Only a string `$eq` (never negated) can hold for a string.
            return needsConfirmation ? scalar.bits == literal.bits : negated
        default:
            return needsConfirmation ? false : general(scalar) != negated
        }
    }

    /// For a `needsConfirmation` test whose `matches` held: whether the
    /// entry under `key` (this test's key) really is `text`, the literal,
    /// not just its hash.
    func confirm(_ metadata: ClientMetadata, key: String, text: String) -> Bool {
        metadata.holdsString(text, key: key, hash: hash)
    }

    /// The positive operator through `ValueComparison`, as
    /// `Comparison.matches` computes it (the version rule needs two strings,
    /// so it never applies here).
    @inline(never)
    private func general(_ scalar: MetadataScalar) -> Bool {
        guard let v = scalar.value, let literal = literal.value else { return false }
        switch op {
        case .eq, .ne: return ValueComparison.equal(v, literal)
        case .gt: return (ValueComparison.order(v, literal) ?? 0) > 0
        case .gte: return ValueComparison.order(v, literal).map { $0 >= 0 } ?? false
        case .lt: return (ValueComparison.order(v, literal) ?? 0) < 0
        case .lte: return ValueComparison.order(v, literal).map { $0 <= 0 } ?? false
        case .in, .nin, .contains, .ncontains: return false
        }
    }
}
