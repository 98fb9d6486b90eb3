// Strict, in-place HTTP/1.1 request-head parser. Standard library only (no Foundation,
// no Glibc): the fuzz harness compiles this file and HTTPRequestHead.swift on their own.

/// Parses HTTP/1.x request heads (request line + header fields) in place.
///
/// Why hand-written: Debian 12's libhttp-parser is the archived, unmaintained
/// nodejs/http_parser, and llhttp is not packaged as a C library. We need only request
/// heads, with our own limits, parsed in place without copying — a strict ~300-line parser
/// that is fuzzed (Fuzz/HTTPRequestParserFuzz.swift) is smaller than the C glue would be.
///
/// Design:
/// - Stateless: every call parses from the start of the buffer, so the caller just calls
///   again when more bytes arrive (cost per call is bounded by `maxHeadSize`). The verdict
///   only ever depends on the bytes already scanned, so feeding a request in pieces gives
///   exactly the same result as feeding it at once.
/// - Errors are detected as early as possible (a bad byte fails the request immediately,
///   without waiting for the end of the head), which rejects garbage such as a TLS
///   handshake on a plain port right away.
/// - Only the first `maxHeadSize` bytes are ever looked at; if the head has not ended
///   there and more bytes are buffered, the answer is 431. A request line longer than
///   `maxHeadSize` is therefore also 431 (not 414).
/// - Leading empty lines before the request line (RFC 9112 §2.2) are skipped, at most
///   `maxLeadingEmptyLines`; they count towards `headLength`.
/// - Strictness beyond the RFC minimum: '#' in the request-target is 400; asterisk-form
///   is accepted only for OPTIONS; authority-form (CONNECT host:port) is 400; a
///   Content-Length list ("5, 5") is 400; a method longer than 32 bytes is 400.
enum HTTPRequestParser {
    /// RFC 9112 §2.2 asks servers to tolerate "at least one" stray CRLF; more is noise.
    static let maxLeadingEmptyLines = 4
    /// Longest accepted method token; every registered method is far shorter.
    static let maxMethodLength = 32

    /// Parses the head at the start of `buffer` into `head`. `.incomplete` if no CRLFCRLF
    /// yet and the limits are not exceeded.
    ///
    /// `head` is reset first (keeping its header capacity); its ranges index `buffer`.
    /// Bytes after `head.headLength` (a body or pipelined requests) are not looked at.
    static func parseHead(
        _ buffer: UnsafeRawBufferPointer,
        limits: HTTPParserLimits,
        into head: inout HTTPRequestHead
    ) -> HTTPParseResult {
        head.reset()
        var cursor = Cursor(buffer: buffer, end: Swift.min(buffer.count, Swift.max(limits.maxHeadSize, 0)))
        do throws(Stop) {
            try parseRequestLine(&cursor, into: &head)
            try parseHeaderFields(&cursor, limits: limits, into: &head)
            return .complete
        } catch {
            switch error {
            case .needMore:
                return buffer.count > limits.maxHeadSize
                    ? .failure(HTTPParseError(status: 431, reason: "request head too large"))
                    : .incomplete
            case .invalid(let e):
                return .failure(e)
            }
        }
    }

    // MARK: - Internals

    /// Unwinds the parse: either the scanned bytes ran out or the head is invalid.
    /// Typed throws keep this allocation-free.
    enum Stop: Error {
        case needMore
        case invalid(HTTPParseError)
    }

    /// Read position over the first `end` bytes of the buffer; running past `end` throws
    /// `.needMore`, which is the only way "incomplete" is ever produced.
    struct Cursor {
        let buffer: UnsafeRawBufferPointer
        let end: Int
        var index = 0

        init(buffer: UnsafeRawBufferPointer, end: Int) {
            self.buffer = buffer
            self.end = end
        }

        @inline(__always)
        func peek() throws(Stop) -> UInt8 {
            guard index < end else { throw .needMore }
            return buffer[index]
        }

        @inline(__always)
        mutating func next() throws(Stop) -> UInt8 {
            guard index < end else { throw .needMore }
            let byte = buffer[index]
            index += 1
            return byte
        }

        /// Consumes one byte that must be `byte`; anything else is a 400 with `reason`.
        @inline(__always)
        mutating func expect(_ byte: UInt8, else reason: StaticString) throws(Stop) {
            guard try next() == byte else { throw bad(400, reason) }
        }

        /// Called right after a CR: the only acceptable continuation is LF.
        @inline(__always)
        mutating func expectLF() throws(Stop) {
            guard try next() == lf else { throw bad(400, "bare CR") }
        }
    }

    @inline(__always)
    static func bad(_ status: Int, _ reason: StaticString) -> Stop {
        .invalid(HTTPParseError(status: status, reason: reason))
    }

    /// `method SP request-target SP HTTP/1.x CRLF`, after at most a few empty lines.
    static func parseRequestLine(_ c: inout Cursor, into head: inout HTTPRequestHead) throws(Stop) {
        var emptyLines = 0
        while try c.peek() == cr {
            c.index += 1
            try c.expectLF()
            emptyLines += 1
            if emptyLines > maxLeadingEmptyLines { throw bad(400, "too many empty lines") }
        }

        // method SP
        let methodStart = c.index
        while true {
            let b = try c.next()
            if b == sp { break }
            guard isTChar(b) else { throw bad(400, "invalid method") }
            if c.index - methodStart > maxMethodLength { throw bad(400, "method too long") }
        }
        head.methodRange = methodStart..<(c.index - 1)
        guard !head.methodRange.isEmpty else { throw bad(400, "invalid method") }
        head.method = knownMethod(c.buffer, head.methodRange)

        // request-target SP
        let targetStart = c.index
        var questionMark: Int? = nil
        while true {
            let b = try c.next()
            if b == sp { break }
            guard b > sp, b < del, b != hash else { throw bad(400, "invalid request target") }
            if b == question, questionMark == nil { questionMark = c.index - 1 }
        }
        let targetEnd = c.index - 1
        guard targetStart < targetEnd else { throw bad(400, "invalid request target") }

        // HTTP-version CRLF. The version is checked before the target's form so that an
        // HTTP/2 preface ("PRI * HTTP/2.0") gets 505, not 400.
        try c.expect(UInt8(ascii: "H"), else: "invalid HTTP version")
        try c.expect(UInt8(ascii: "T"), else: "invalid HTTP version")
        try c.expect(UInt8(ascii: "T"), else: "invalid HTTP version")
        try c.expect(UInt8(ascii: "P"), else: "invalid HTTP version")
        try c.expect(slash, else: "invalid HTTP version")
        let major = try c.next()
        guard isDigit(major) else { throw bad(400, "invalid HTTP version") }
        try c.expect(UInt8(ascii: "."), else: "invalid HTTP version")
        let minor = try c.next()
        guard isDigit(minor) else { throw bad(400, "invalid HTTP version") }
        guard major == UInt8(ascii: "1"), minor <= UInt8(ascii: "1") else {
            throw bad(505, "HTTP version not supported")
        }
        head.versionMinor = Int(minor - UInt8(ascii: "0"))
        switch try c.next() {
        case cr: try c.expectLF()
        case lf: throw bad(400, "bare LF")
        default: throw bad(400, "invalid HTTP version")
        }

        try classifyTarget(c.buffer, targetStart..<targetEnd, questionMark: questionMark, into: &head)
    }

    /// Splits the target into path and query and checks it is origin-form ("/p?q"),
    /// asterisk-form ("*", OPTIONS only) or absolute-form ("scheme://authority/p?q").
    static func classifyTarget(
        _ buffer: UnsafeRawBufferPointer,
        _ target: Range<Int>,
        questionMark: Int?,
        into head: inout HTTPRequestHead
    ) throws(Stop) {
        head.target = target
        let pathEnd = questionMark ?? target.upperBound
        head.query = questionMark.map { ($0 + 1)..<target.upperBound }
        let first = buffer[target.lowerBound]

        if first == slash {
            head.path = target.lowerBound..<pathEnd
            return
        }
        if first == asterisk, target.count == 1 {
            guard head.method == .options else { throw bad(400, "asterisk-form target requires OPTIONS") }
            head.path = target
            return
        }

        // absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://".
        guard isAlpha(first) else { throw bad(400, "invalid request target") }
        var i = target.lowerBound + 1
        while i < pathEnd, buffer[i] != colon {
            let b = buffer[i]
            guard isAlpha(b) || isDigit(b) || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") else {
                throw bad(400, "invalid request target")
            }
            i += 1
        }
        guard i + 2 < pathEnd, buffer[i] == colon, buffer[i + 1] == slash, buffer[i + 2] == slash else {
            throw bad(400, "invalid request target")
        }
        let authorityStart = i + 3
        var authorityEnd = authorityStart
        while authorityEnd < pathEnd, buffer[authorityEnd] != slash { authorityEnd += 1 }
        guard authorityStart < authorityEnd else { throw bad(400, "invalid request target") }
        // Empty range (at the end of the authority) when the URI has no path: means "/".
        head.path = authorityEnd..<pathEnd
    }

    /// Header fields up to and including the empty line; also derives the framing and
    /// connection fields (Content-Length, Transfer-Encoding, Host, keep-alive, upgrade).
    static func parseHeaderFields(_ c: inout Cursor, limits: HTTPParserLimits, into head: inout HTTPRequestHead) throws(Stop) {
        var hostCount = 0
        var sawTransferEncoding = false
        var connectionClose = false
        var connectionKeepAlive = false

        while true {
            let lineStart = c.index
            switch try c.peek() {
            case cr:
                c.index += 1
                try c.expectLF()
                head.headLength = c.index
                if sawTransferEncoding, head.contentLength != nil {
                    throw bad(400, "Content-Length with Transfer-Encoding")
                }
                if head.versionMinor == 1, hostCount == 0 { throw bad(400, "missing Host header") }
                head.keepAlive = head.versionMinor == 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
                return
            case lf:
                throw bad(400, "bare LF")
            case sp, htab:
                throw bad(400, "obsolete line folding")
            default:
                break
            }
            guard head.headers.count < limits.maxHeaderCount else { throw bad(431, "too many header fields") }

            // field-name ":"
            while true {
                let b = try c.next()
                if b == colon { break }
                guard isTChar(b) else { throw bad(400, "invalid header name") }
            }
            let name = lineStart..<(c.index - 1)
            guard !name.isEmpty else { throw bad(400, "invalid header name") }

            // OWS field-value OWS CRLF
            while true {
                let b = try c.peek()
                guard b == sp || b == htab else { break }
                c.index += 1
            }
            let valueStart = c.index
            var valueEnd = valueStart
            while true {
                let b = try c.next()
                if b == cr { try c.expectLF(); break }
                if b == sp || b == htab { continue }
                if b == lf { throw bad(400, "bare LF") }
                // VCHAR or obs-text; rejects NUL, LF and the other CTLs, and DEL.
                guard b > sp, b != del else { throw bad(400, "invalid header value") }
                valueEnd = c.index
            }
            let value = valueStart..<valueEnd
            head.headers.append(HTTPHeaderField(name: name, value: value))

            let buffer = c.buffer
            switch name.count {
            case 4 where asciiCaseInsensitiveEquals(buffer, name, "host"):
                hostCount += 1
                if hostCount > 1 { throw bad(400, "multiple Host headers") }
            case 10 where asciiCaseInsensitiveEquals(buffer, name, "connection"):
                if headerTokenListContains(buffer, value, "close") { connectionClose = true }
                if headerTokenListContains(buffer, value, "keep-alive") { connectionKeepAlive = true }
                if headerTokenListContains(buffer, value, "upgrade") { head.connectionHasUpgradeToken = true }
            case 14 where asciiCaseInsensitiveEquals(buffer, name, "content-length"):
                let length = try parseContentLength(buffer, value)
                if let previous = head.contentLength, previous != length {
                    throw bad(400, "conflicting Content-Length")
                }
                if length > limits.maxBodySize { throw bad(413, "content too large") }
                head.contentLength = length
            case 17 where asciiCaseInsensitiveEquals(buffer, name, "transfer-encoding"):
                sawTransferEncoding = true
                head.isChunked = true
            default:
                break
            }
        }
    }

    /// 1*DIGIT, no sign, no list, no overflow; anything else is 400 (RFC 9112 §6.3 says
    /// an invalid Content-Length is unrecoverable framing).
    static func parseContentLength(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) throws(Stop) -> Int {
        guard !range.isEmpty else { throw bad(400, "invalid Content-Length") }
        var n = 0
        for i in range {
            let b = buffer[i]
            guard isDigit(b) else { throw bad(400, "invalid Content-Length") }
            let (times10, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(b - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw bad(400, "invalid Content-Length") }
            n = sum
        }
        return n
    }

    /// Methods are case-sensitive; only exact registered spellings map to a known case.
    static func knownMethod(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> HTTPMethod {
        func matches(_ literal: StaticString) -> Bool {
            guard range.count == literal.utf8CodeUnitCount else { return false }
            return literal.withUTF8Buffer { lit in
                var j = range.lowerBound
                for b in lit {
                    if buffer[j] != b { return false }
                    j += 1
                }
                return true
            }
        }
        switch range.count {
        case 3: return matches("GET") ? .get : matches("PUT") ? .put : .other
        case 4: return matches("HEAD") ? .head : matches("POST") ? .post : .other
        case 5: return matches("PATCH") ? .patch : matches("TRACE") ? .trace : .other
        case 6: return matches("DELETE") ? .delete : .other
        case 7: return matches("OPTIONS") ? .options : matches("CONNECT") ? .connect : .other
        default: return .other
        }
    }
}

// MARK: - Lookups on a parsed head

extension HTTPRequestHead {
    /// First header with this name (name given in lowercase ASCII), value range.
    func firstValue(of lowercaseName: StaticString, in buffer: UnsafeRawBufferPointer) -> Range<Int>? {
        for field in headers where asciiCaseInsensitiveEquals(buffer, field.name, lowercaseName) {
            return field.value
        }
        return nil
    }

    /// First header with this name, for names only known at run time (e.g. configured).
    func firstValue(of lowercaseName: [UInt8], in buffer: UnsafeRawBufferPointer) -> Range<Int>? {
        for field in headers where asciiCaseInsensitiveEquals(buffer, field.name, lowercaseName) {
            return field.value
        }
        return nil
    }
}

/// ASCII case-insensitive compare of buffer[range] with a literal.
///
/// Both sides are folded, so the literal may be in any case. A range outside the buffer
/// compares unequal rather than trapping.
func asciiCaseInsensitiveEquals(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
    literal.withUTF8Buffer { asciiCaseInsensitiveEquals(buffer, range, UnsafeRawBufferPointer($0)) }
}

/// ASCII case-insensitive compare of buffer[range] with a byte array.
func asciiCaseInsensitiveEquals(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: [UInt8]) -> Bool {
    literal.withUnsafeBytes { asciiCaseInsensitiveEquals(buffer, range, $0) }
}

/// Shared body of the two overloads above.
func asciiCaseInsensitiveEquals(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: UnsafeRawBufferPointer) -> Bool {
    guard range.lowerBound >= 0, range.upperBound <= buffer.count, range.count == literal.count else { return false }
    var j = 0
    for i in range {
        if HTTPRequestParser.asciiLowercase(buffer[i]) != HTTPRequestParser.asciiLowercase(literal[j]) { return false }
        j += 1
    }
    return true
}

/// Does a comma-separated token list (e.g. Connection, Upgrade) contain this token (case-insensitive)?
///
/// Elements are trimmed of OWS and empty elements ignored (RFC 9110 §5.6.1).
func headerTokenListContains(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ token: StaticString) -> Bool {
    guard range.lowerBound >= 0, range.upperBound <= buffer.count else { return false }
    let comma = HTTPRequestParser.comma, sp = HTTPRequestParser.sp, htab = HTTPRequestParser.htab
    var start = range.lowerBound
    while start < range.upperBound {
        var end = start
        while end < range.upperBound, buffer[end] != comma { end += 1 }
        var lo = start
        var hi = end
        while lo < hi, buffer[lo] == sp || buffer[lo] == htab { lo += 1 }
        while hi > lo, buffer[hi - 1] == sp || buffer[hi - 1] == htab { hi -= 1 }
        if lo < hi, asciiCaseInsensitiveEquals(buffer, lo..<hi, token) { return true }
        start = end + 1
    }
    return false
}

/// The bytes of a range as a String, for logging and for the few places that need text
/// (invalid UTF-8 is repaired, never trapped on).
func httpString(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    guard range.lowerBound >= 0, range.upperBound <= buffer.count else { return "" }
    return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[range]), as: UTF8.self)
}

// MARK: - Byte classes

/// Byte constants and classes, as members so that they never clash with (or become
/// ambiguous against) module-level helpers elsewhere in the module.
extension HTTPRequestParser {
    @inline(__always) static var cr: UInt8 { UInt8(ascii: "\r") }
    @inline(__always) static var lf: UInt8 { UInt8(ascii: "\n") }
    @inline(__always) static var sp: UInt8 { UInt8(ascii: " ") }
    @inline(__always) static var htab: UInt8 { UInt8(ascii: "\t") }
    @inline(__always) static var del: UInt8 { 0x7F }
    @inline(__always) static var colon: UInt8 { UInt8(ascii: ":") }
    @inline(__always) static var comma: UInt8 { UInt8(ascii: ",") }
    @inline(__always) static var slash: UInt8 { UInt8(ascii: "/") }
    @inline(__always) static var asterisk: UInt8 { UInt8(ascii: "*") }
    @inline(__always) static var question: UInt8 { UInt8(ascii: "?") }
    @inline(__always) static var hash: UInt8 { UInt8(ascii: "#") }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }
    @inline(__always) static func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) &- 0x61 < 26 }
    @inline(__always) static func asciiLowercase(_ b: UInt8) -> UInt8 { b &- 0x41 < 26 ? b | 0x20 : b }

    /// tchar (RFC 9110 §5.6.2): the characters allowed in methods and header names.
    @inline(__always) static func isTChar(_ b: UInt8) -> Bool {
        if isAlpha(b) || isDigit(b) { return true }
        switch b {
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// token (RFC 9110 §5.6.2): one or more tchar. The module's one token
    /// check, also used by the proxy for the method and header names it
    /// accepts from a client and sends upstream.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { isTChar($0) }
    }
}
