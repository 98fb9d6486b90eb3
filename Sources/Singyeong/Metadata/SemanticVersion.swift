/// A Semantic Versioning 2.0.0 version string (https://semver.org): strict
/// grammar (no `v` prefix, exactly three numeric core parts without leading
/// zeros, optional `-prerelease`, optional `+build`).
///
/// Equality and ordering are SemVer *precedence*: build metadata is ignored,
/// so `1.0.0+a == 1.0.0+b`. Numeric identifiers may be arbitrarily long; they
/// are compared as digit strings, never converted to fixed-width integers.
///
/// Query evaluation calls `compare(_:_:)` directly on the stored strings; it
/// works on the UTF-8 bytes in place and allocates nothing.
struct SemanticVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The original text, build metadata included.
    let text: String

    /// Nil if `text` is not a valid SemVer 2.0.0 version.
    init?(_ text: String) {
        guard Self.isValid(text) else { return nil }
        self.text = text
    }

    var description: String { text }

    /// Whether `text` is a valid SemVer 2.0.0 version.
    static func isValid(_ text: String) -> Bool {
        withUTF8Bytes(text) { SemVerLayout(parsing: $0) != nil }
    }

    /// Precedence comparison of two version strings: -1, 0 or 1, or nil if
    /// either string is not a valid version.
    static func compare(_ a: String, _ b: String) -> Int? {
        withUTF8Bytes(a) { ab in
            withUTF8Bytes(b) { bb -> Int? in
                guard let la = SemVerLayout(parsing: ab), let lb = SemVerLayout(parsing: bb) else { return nil }
                return SemVerLayout.compare(ab, la, bb, lb)
            }
        }
    }

    static func < (lhs: SemanticVersion, rhs: SemanticVersion) -> Bool {
        compare(lhs.text, rhs.text)! < 0
    }

    /// Precedence equality (build metadata ignored).
    static func == (lhs: SemanticVersion, rhs: SemanticVersion) -> Bool {
        compare(lhs.text, rhs.text)! == 0
    }

    /// Hashes the precedence-relevant part only, consistent with `==`.
    func hash(into hasher: inout Hasher) {
        for byte in text.utf8 {
            if byte == UInt8(ascii: "+") { break }
            hasher.combine(byte)
        }
    }
}

/// Runs `body` over a string's UTF-8 bytes without copying them to the heap
/// (native Swift strings, including small ones, are contiguous UTF-8).
@inline(__always)
fileprivate func withUTF8Bytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let r = string.utf8.withContiguousStorageIfAvailable(body) { return r }
    var copy = string
    return copy.withUTF8(body)
}

/// Byte offsets of the parts of a parsed version; keeping offsets instead of
/// substrings or arrays is what makes parsing and comparison allocation-free.
private struct SemVerLayout {
    var major: Range<Int>
    var minor: Range<Int>
    var patch: Range<Int>
    /// Prerelease identifiers (dot-separated), without the `-`; nil if absent.
    var prerelease: Range<Int>?

    init?(parsing b: UnsafeBufferPointer<UInt8>) {
        var i = 0
        guard let major = Self.numeric(b, &i), Self.expect(b, &i, UInt8(ascii: ".")),
              let minor = Self.numeric(b, &i), Self.expect(b, &i, UInt8(ascii: ".")),
              let patch = Self.numeric(b, &i) else { return nil }
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = nil
        if i < b.count && b[i] == UInt8(ascii: "-") {
            i += 1
            let start = i
            guard Self.identifiers(b, &i, prerelease: true) else { return nil }
            prerelease = start..<i
        }
        if i < b.count && b[i] == UInt8(ascii: "+") {
            i += 1
            guard Self.identifiers(b, &i, prerelease: false) else { return nil }
        }
        guard i == b.count else { return nil }
    }

    private static func expect(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ byte: UInt8) -> Bool {
        guard i < b.count, b[i] == byte else { return false }
        i += 1
        return true
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

    private static func isIdentifierByte(_ c: UInt8) -> Bool {
        isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == UInt8(ascii: "-")
    }

    /// A numeric identifier: `0` or digits without a leading zero.
    private static func numeric(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Range<Int>? {
        let start = i
        while i < b.count && isDigit(b[i]) { i += 1 }
        guard i > start else { return nil }
        if b[start] == UInt8(ascii: "0") && i - start > 1 { return nil }
        return start..<i
    }

    /// Dot-separated non-empty identifiers up to `+` (prerelease) or the end.
    /// Numeric prerelease identifiers must not have leading zeros; build
    /// identifiers may.
    private static func identifiers(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int, prerelease: Bool) -> Bool {
        while true {
            let start = i
            var allDigits = true
            while i < b.count && isIdentifierByte(b[i]) {
                if !isDigit(b[i]) { allDigits = false }
                i += 1
            }
            guard i > start else { return false }
            if prerelease && allDigits && b[start] == UInt8(ascii: "0") && i - start > 1 { return false }
            if i < b.count && b[i] == UInt8(ascii: ".") { i += 1; continue }
            return true
        }
    }

    /// Compares two digit strings without leading zeros: longer is larger.
    private static func compareNumeric(_ a: UnsafeBufferPointer<UInt8>, _ ra: Range<Int>,
                                       _ b: UnsafeBufferPointer<UInt8>, _ rb: Range<Int>) -> Int {
        if ra.count != rb.count { return ra.count < rb.count ? -1 : 1 }
        return compareBytes(a, ra, b, rb)
    }

    private static func compareBytes(_ a: UnsafeBufferPointer<UInt8>, _ ra: Range<Int>,
                                     _ b: UnsafeBufferPointer<UInt8>, _ rb: Range<Int>) -> Int {
        var i = ra.lowerBound, j = rb.lowerBound
        while i < ra.upperBound && j < rb.upperBound {
            if a[i] != b[j] { return a[i] < b[j] ? -1 : 1 }
            i += 1; j += 1
        }
        if i < ra.upperBound { return 1 }
        if j < rb.upperBound { return -1 }
        return 0
    }

    private static func allDigits(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> Bool {
        for k in r where !isDigit(b[k]) { return false }
        return true
    }

    static func compare(_ a: UnsafeBufferPointer<UInt8>, _ la: SemVerLayout,
                        _ b: UnsafeBufferPointer<UInt8>, _ lb: SemVerLayout) -> Int {
        var c = compareNumeric(a, la.major, b, lb.major)
        if c != 0 { return c }
        c = compareNumeric(a, la.minor, b, lb.minor)
        if c != 0 { return c }
        c = compareNumeric(a, la.patch, b, lb.patch)
        if c != 0 { return c }
        switch (la.prerelease, lb.prerelease) {
        case (nil, nil): return 0
        case (nil, _): return 1      // a release ranks above its prereleases
        case (_, nil): return -1
        case (let pa?, let pb?): return comparePrerelease(a, pa, b, pb)
        }
    }

    /// SemVer §11.4: identifier by identifier; numeric < alphanumeric;
    /// numeric numerically, alphanumeric in ASCII order; a longer list wins
    /// when all shared identifiers are equal.
    private static func comparePrerelease(_ a: UnsafeBufferPointer<UInt8>, _ ra: Range<Int>,
                                          _ b: UnsafeBufferPointer<UInt8>, _ rb: Range<Int>) -> Int {
        var i = ra.lowerBound, j = rb.lowerBound
        while true {
            let aDone = i >= ra.upperBound, bDone = j >= rb.upperBound
            if aDone && bDone { return 0 }
            if aDone { return -1 }
            if bDone { return 1 }
            var ei = i
            while ei < ra.upperBound && a[ei] != UInt8(ascii: ".") { ei += 1 }
            var ej = j
            while ej < rb.upperBound && b[ej] != UInt8(ascii: ".") { ej += 1 }
            let ida = i..<ei, idb = j..<ej
            let na = allDigits(a, ida), nb = allDigits(b, idb)
            let c: Int
            if na && nb { c = compareNumeric(a, ida, b, idb) }
            else if na { c = -1 }
            else if nb { c = 1 }
            else { c = compareBytes(a, ida, b, idb) }
            if c != 0 { return c }
            i = ei + 1
            j = ej + 1
        }
    }
}
