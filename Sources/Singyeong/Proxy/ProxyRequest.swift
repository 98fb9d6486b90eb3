/// A validated `POST /api/v1/proxy` request (rest.md §4.1–§4.2): what the
/// node holding the chosen client sends upstream, and the query that chooses
/// that client.
///
/// Validation follows the spec's order and texts exactly; inputs that crashed
/// the original (a non-string method or route, non-object headers, an invalid
/// query) get the Recommended `{"errors":["<field>: <problem>"]}` 400 instead.
struct ProxyRequest {
    var method: String
    /// Path (and optional query string) on the target, as given.
    var route: String
    /// The caller's headers minus hop-by-hop ones, `content-length` and any
    /// `x-forwarded-for` (the node adds its own, rest.md §4.5).
    var headers: [(String, String)]
    /// nil for GET and HEAD: no body at all (Recommended).
    var body: [UInt8]?
    var query: Query
    /// The query as JSON text (with `restricted` forced off), for peers.
    var encodedQuery: [UInt8]

    static let validMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
    static let unsupportedMethods = ["CONNECT", "OPTIONS", "TRACE"]

    /// Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1) and
    /// framing, which belong to each connection, not to the message.
    static let droppedRequestHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "content-length", "x-forwarded-for",
    ]

    /// The request, or the 400 to answer. With a `cache`, a query seen
    /// before is not compiled again (keyed by its JSON text).
    static func validate(_ fields: ValueObject, cache: QueryCache? = nil) -> Result<ProxyRequest, HTTPResponse> {
        func absent(_ name: String) -> Bool {
            guard let value = fields[name] else { return true }
            return value == .null
        }
        if absent("method") { return .failure(.json(400, "{\"method\":[\"no method provided\"]}")) }
        if absent("route") { return .failure(.json(400, "{\"route\":[\"no route provided\"]}")) }
        if absent("query") { return .failure(.json(400, "{\"query\":[\"no query provided\"]}")) }
        guard case .string(let method) = fields["method"]! else { return .failure(error("method: must be a string")) }
        guard validMethods.contains(method) else {
            return .failure(error("\(method) is not a valid method! (valid methods: [\"GET\", \"HEAD\", \"POST\", \"PUT\", \"DELETE\", \"CONNECT\", \"OPTIONS\", \"TRACE\", \"PATCH\"])"))
        }
        guard !unsupportedMethods.contains(method) else {
            return .failure(error("\(method) is not a supported method! (not supported: [\"CONNECT\", \"OPTIONS\", \"TRACE\"])"))
        }
        // §4.1: absent / null / false → ""; objects and arrays → JSON text;
        // strings as they are; other scalars → JSON text.
        var body: [UInt8] = []
        switch fields["body"] ?? .null {
        case .null, .bool(false): break
        case .string(let text): body = Array(text.utf8)
        case let other: other.appendJSON(to: &body)
        }
        let takesNoBody = method == "GET" || method == "HEAD"
        if takesNoBody && !body.isEmpty {
            return .failure(error("no body required but one given (you probably wanted to send nil)"))
        }
        guard case .string(let route) = fields["route"]! else { return .failure(error("route: must be a string")) }
        // The route becomes part of a URL: no whitespace or control bytes
        // (they would make another request line or a malformed URL).
        if route.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) {
            return .failure(error("route: must not contain spaces or control characters"))
        }
        var headers: [(String, String)] = []
        switch fields["headers"] ?? .null {
        case .null: break
        case .object(let object):
            for (name, value) in object.members {
                guard case .string(let text) = value else { return .failure(error("headers: must be an object of strings")) }
                guard HTTPRequestParser.isToken(name) else { return .failure(error("headers: invalid header name \(quoted(name))")) }
                guard !text.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7f }) else {
                    return .failure(error("headers: invalid value for \(quoted(name))"))
                }
                if droppedRequestHeaders.contains(name.lowercased()) { continue }
                headers.append((name, text))
            }
        default:
            return .failure(error("headers: must be an object of strings"))
        }
        // §4.3 Recommended: restricted clients are never candidates, whatever
        // the query says.
        var queryValue = fields["query"]!
        if case .object(var object) = queryValue {
            object["restricted"] = .bool(false)
            queryValue = .object(object)
        }
        var encoded: [UInt8] = []
        queryValue.appendJSON(to: &encoded)
        let compiled: Result<Query, QueryError>
        if let cache {
            compiled = encoded.withUnsafeBytes { cache.query(for: $0, tag: 2) { Query.parse(queryValue, context: "query") } }
        } else {
            compiled = Query.parse(queryValue, context: "query")
        }
        let query: Query
        switch compiled {
        case .success(let q): query = q
        case .failure(let problem): return .failure(error("invalid query: \(problem.detail)"))
        }
        return .success(ProxyRequest(method: method, route: route, headers: headers, body: takesNoBody ? nil : body,
                                     query: query, encodedQuery: encoded))
    }

    /// 400 `{"errors":["<text>"]}` (rest.md §4.2).
    static func error(_ text: String, status: Int = 400) -> HTTPResponse {
        .errorList(text, status: status)
    }

    private static func quoted(_ s: String) -> String { "\"\(s)\"" }
}
