/// What routing needs to know about a query's ops beyond evaluating them,
/// worked out once when the query is compiled (and cached with it) rather
/// than on every message.
struct QueryPlan: Sendable {
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
    /// Per test: the key's name, and for a string `$eq` the literal (what
    /// `ScalarTest.confirm` compares); empty without `scalarTests`.
    let testKeys: [String]
    let testStrings: [String?]

    /// A store keeps at most this many columns per application.
    static let maxScalarTests = 8

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
        var comparisons: [(ScalarTest, Comparison)] = []
        if Self.flatten(ops, into: &comparisons) {
            scalarTests = comparisons.map(\.0)
            testKeys = comparisons.map { $0.1.path.segments[0].name }
            testStrings = comparisons.map { if case .literal(.string(let text)) = $0.1.operand { text } else { nil } }
        } else {
            scalarTests = nil
            testKeys = []
            testStrings = []
        }
    }

    /// Appends the tests of `ops` (an implicit AND); false if one of them is
    /// not a column test or there are too many.
    private static func flatten(_ ops: [QueryOp], into tests: inout [(ScalarTest, Comparison)]) -> Bool {
        for op in ops {
            switch op {
            case .comparison(let c):
                guard let test = ScalarTest(c), tests.count < maxScalarTests else { return false }
                tests.append((test, c))
            case .logical(.and, let children):
                guard flatten(children, into: &tests) else { return false }
            case .logical(.or, _), .logical(.nor, _):
                return false
            }
        }
        return true
    }
}
