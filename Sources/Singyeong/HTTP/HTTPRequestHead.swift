// Value types produced by `HTTPRequestParser`. Standard library only: this file is
// compiled on its own into the libFuzzer harness (see Fuzz/HTTPRequestParserFuzz.swift).

/// Request methods the server knows; anything else is `.other` (still a valid token).
///
/// Methods are case-sensitive (RFC 9110 §9.1), so "get" is `.other`, not `.get`;
/// the exact bytes stay available through `HTTPRequestHead.methodRange`.
enum HTTPMethod: Sendable, Equatable {
    case get, head, post, put, delete, patch, options, connect, trace, other
}

/// One header field as byte ranges into the request buffer (value has surrounding OWS trimmed).
///
/// Ranges instead of Strings so that parsing a head never copies or allocates;
/// an empty value is an empty range positioned where the value would start.
struct HTTPHeaderField: Sendable, Equatable {
    var name: Range<Int>
    var value: Range<Int>
}

/// A parsed request head; reused across requests on one connection.
///
/// Every range is a byte offset into the buffer that was passed to
/// `HTTPRequestParser.parseHead`, counted from that buffer's start, so the head is only
/// meaningful together with that buffer (and only after `.complete`; after `.incomplete`
/// or `.failure` the fields hold whatever was parsed so far). One instance per connection,
/// so the `headers` storage is allocated once and then reused.
struct HTTPRequestHead: Sendable, Equatable {
    /// Headers reserved up front so that typical requests never grow the array.
    static let initialHeaderCapacity = 16

    var method: HTTPMethod
    var methodRange: Range<Int>
    /// The request-target as sent (origin-form path plus optional `?query`, `*`, or absolute-form URI).
    var target: Range<Int>
    /// The target up to (not including) the first '?'. For asterisk-form it is the "*".
    /// For absolute-form ("http://host/p?q") it is the path part ("/p"); when the URI has
    /// no path ("http://host" or "http://host?q") it is an EMPTY range and the caller must
    /// treat it as "/".
    var path: Range<Int>
    /// After the first '?', may be empty ("/a?"); nil when the target has no '?'.
    var query: Range<Int>?
    /// 0 or 1 (HTTP/1.0, HTTP/1.1); other versions are rejected with 505.
    var versionMinor: Int
    var headers: [HTTPHeaderField]
    /// Parsed Content-Length, nil if absent.
    var contentLength: Int?
    /// A Transfer-Encoding header is present (whatever its value); the server refuses these
    /// bodies itself (411/501), the parser only flags them.
    var isChunked: Bool
    /// HTTP/1.1: true unless "Connection: close"; HTTP/1.0: false unless
    /// "Connection: keep-alive" (and no "close"). Token lists, case-insensitive.
    var keepAlive: Bool
    /// The Connection header token list(s) contain "upgrade" (case-insensitive; several
    /// Connection headers are merged).
    var connectionHasUpgradeToken: Bool
    /// Bytes of the head including the final CRLFCRLF (and any skipped leading empty
    /// lines); the body or the next pipelined request starts at this offset.
    var headLength: Int

    init() {
        method = .other
        methodRange = 0..<0
        target = 0..<0
        path = 0..<0
        query = nil
        versionMinor = 1
        headers = []
        headers.reserveCapacity(Self.initialHeaderCapacity)
        contentLength = nil
        isChunked = false
        keepAlive = false
        connectionHasUpgradeToken = false
        headLength = 0
    }

    /// Clears every field but keeps the headers' storage, so the next request on the
    /// connection does not allocate.
    mutating func reset() {
        method = .other
        methodRange = 0..<0
        target = 0..<0
        path = 0..<0
        query = nil
        versionMinor = 1
        headers.removeAll(keepingCapacity: true)
        contentLength = nil
        isChunked = false
        keepAlive = false
        connectionHasUpgradeToken = false
        headLength = 0
    }
}

/// Limits, all checked while parsing so a peer cannot make us buffer without bound.
struct HTTPParserLimits: Sendable, Equatable {
    /// Largest accepted head (request line + headers + final CRLFCRLF); more is 431.
    var maxHeadSize: Int = 16 * 1024
    /// Most header fields accepted; more is 431.
    var maxHeaderCount: Int = 100
    /// Largest accepted Content-Length; more is 413.
    var maxBodySize: Int = 1 << 20

    init(maxHeadSize: Int = 16 * 1024, maxHeaderCount: Int = 100, maxBodySize: Int = 1 << 20) {
        self.maxHeadSize = maxHeadSize
        self.maxHeaderCount = maxHeaderCount
        self.maxBodySize = maxBodySize
    }
}

/// Why a head was rejected; `status` is what the server answers before closing.
///
/// `reason` is a `StaticString` so that building an error never allocates; it is a short
/// fixed text meant for logs and the response body, never derived from peer bytes.
struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    var status: Int
    var reason: StaticString

    init(status: Int, reason: StaticString) {
        self.status = status
        self.reason = reason
    }

    /// StaticString is not Equatable; compare its bytes.
    static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        guard lhs.status == rhs.status else { return false }
        return lhs.reason.withUTF8Buffer { l in
            rhs.reason.withUTF8Buffer { r in l.elementsEqual(r) }
        }
    }

    var description: String { "\(status) \(reason)" }
}

/// Outcome of one `parseHead` call; `.incomplete` means "read more and call again".
enum HTTPParseResult: Sendable, Equatable {
    case incomplete
    case complete
    case failure(HTTPParseError)
}
