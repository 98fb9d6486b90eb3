/// Builds HTTP/1.1 responses as one `OutboundBytes` (status line, headers and
/// body in a single allocation and a single write).
///
/// REST responses are small and built once per request, so a byte array is
/// assembled and copied once; nothing here runs per WebSocket message.
struct HTTPResponse {
    var status: Int
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    /// For HEAD: send the headers (with the body's length) but no body.
    var omitBody = false

    init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response (`application/json; charset=utf-8`, rest.md).
    /// `{"errors":["<text>"]}`: how the proxy endpoint and the nodes that
    /// relay for it report a failure (rest.md §4.2).
    static func errorList(_ text: String, status: Int = 400) -> HTTPResponse {
        .json(status, "{\"errors\":[\(JSONText.quoted(text))]}")
    }

    static func json(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("content-type", "application/json; charset=utf-8")], body: Array(body.utf8))
    }

    /// The `{"errors":{"detail":"..."}}` error shape of rest.md §2.2/§2.3,
    /// used for protocol-level failures (bad request head, limits).
    static func errorDetail(_ status: Int, _ detail: String) -> HTTPResponse {
        json(status, "{\"errors\":{\"detail\":\(JSONText.quoted(detail))}}")
    }

    /// Serialises the response. `keepAlive` false adds `connection: close`.
    func encoded(keepAlive: Bool) -> OutboundBytes {
        var text = "HTTP/1.1 \(status) \(HTTPResponse.reasonPhrase(status))\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if status >= 200 && status != 204 && status != 304 {
            text += "content-length: \(body.count)\r\n"
        }
        if !keepAlive { text += "connection: close\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        if !omitBody { bytes.append(contentsOf: body) }
        return OutboundBytes.copying(bytes)
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 204: return "No Content"
        case 302: return "Found"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 426: return "Upgrade Required"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }
}

/// Minimal JSON text helpers for responses the server writes itself.
enum JSONText {
    /// `s` as a JSON string literal (quotes, escapes for `"`, `\` and control characters).
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Request validation returns the response to answer as its failure
/// (`Result<…, HTTPResponse>`): the error *is* the reply.
extension HTTPResponse: Error {}
