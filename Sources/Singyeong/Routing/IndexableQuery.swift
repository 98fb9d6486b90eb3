extension Query {
    /// A top-level (implicitly AND-ed) `$eq` of a single-segment path against
    /// a literal string that is not a SemVer version, if the query has one.
    ///
    /// Only clients whose entry under that key is a string with exactly those
    /// bytes can satisfy it (query.md §6.3: different types never compare
    /// equal; the version rule needs both sides to parse as SemVer, and a
    /// `version` entry always does, so a non-SemVer operand never matches
    /// one), which is what makes the store's string index a safe narrowing.
    var indexableEquality: (key: String, value: String)? {
        for op in ops {
            guard case .comparison(let c) = op, c.op == .eq, c.path.segments.count == 1,
                  case .literal(.string(let value)) = c.operand,
                  !SemanticVersion.isValid(value)
            else { continue }
            return (c.path.segments[0].name, value)
        }
        return nil
    }
}
