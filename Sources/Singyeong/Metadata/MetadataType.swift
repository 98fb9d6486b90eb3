/// The declared type of one metadata entry (`protocol.md` §7.1). Kept next to
/// each value because queries depend on it (the SemVer rule of `query.md`
/// §6.3 applies only to keys declared `version`).
enum MetadataType: String, Sendable, CaseIterable {
    case string, integer, float, version, list, boolean, map

    /// Checks a client-supplied value against this type and returns what is
    /// stored, or nil if the value is not acceptable. `float` also accepts an
    /// integer (JavaScript serialisers print `1.0` as `1`) and stores it as a
    /// double so later numeric comparisons see a float, as the client meant.
    /// `null` is never acceptable.
    func validate(_ value: Value) -> Value? {
        switch (self, value) {
        case (.string, .string): return value
        case (.integer, .int), (.integer, .uint): return value
        case (.float, .double): return value
        case (.float, .int(let i)): return .double(Double(i))
        case (.float, .uint(let u)): return .double(Double(u))
        case (.version, .string(let s)): return SemanticVersion.isValid(s) ? value : nil
        case (.list, .array): return value
        case (.boolean, .bool): return value
        case (.map, .object): return value
        default: return nil
        }
    }
}
