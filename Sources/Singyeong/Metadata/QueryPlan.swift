/// What routing needs to know about a query's ops beyond evaluating them,
/// worked out once when the query is compiled (and cached with it) rather
/// than on every message.
///
/// A reference type so that copying a `Query` (several times per SEND) adds
/// one reference count, not one per field.
final class QueryPlan: Sendable {
    /// A top-level (implicitly AND-ed) `$eq` of a single-segment path against
    /// a literal string that is not a SemVer version, if the query has one.
    ///
    /// Only clients whose entry under that key is a string with exactly those
    /// bytes can satisfy it (query.md §6.3: different types never compare
    /// equal; the version rule needs both sides to parse as SemVer, and a
    /// `version` entry always does, so a non-SemVer operand never matches
    /// one), which is what makes the store's string index a safe narrowing.
    let indexableEquality: (key: String, value: String)?

    /// The ops as column tests, when every op is (or is an `$and` of)
    /// comparisons that `ScalarTest` can evaluate, at most `maxScalarTests`
    /// of them: a client matches exactly when it passes every test. Empty
    /// for a query without ops; nil when some op needs the full evaluation.
    let scalarTests: [ScalarTest]?

    /// A store keeps at most this many columns per application.
    static let maxScalarTests = 8

    static let empty = QueryPlan([])

    init(_ ops: [QueryOp]) {
        var equality: (key: String, value: String)?
        for op in ops {
            guard case .comparison(let c) = op, c.op == .eq, c.path.segments.count == 1,
                  case .literal(.string(let value)) = c.operand,
                  !SemanticVersion.isValid(value)
            else { continue }
            equality = (c.path.segments[0].name, value)
            break
        }
        indexableEquality = equality
        var tests: [ScalarTest] = []
        scalarTests = Self.flatten(ops, into: &tests) ? tests : nil
    }

    /// Appends the tests of `ops` (an implicit AND); false if one of them is
    /// not a column test or there are too many.
    private static func flatten(_ ops: [QueryOp], into tests: inout [ScalarTest]) -> Bool {
        for op in ops {
            switch op {
            case .comparison(let c):
                guard let test = ScalarTest(c), tests.count < maxScalarTests else { return false }
                tests.append(test)
            case .logical(.and, let children):
                guard flatten(children, into: &tests) else { return false }
            case .logical(.or, _), .logical(.nor, _):
                return false
            }
        }
        return true
    }
}
