import CCurl
import Glibc

/// One request the HTTP proxy sends to an upstream service.
///
/// The proxy relays what its client asked for, so nothing here is
/// normalised: the URL goes to libcurl as-is and the headers are sent exactly
/// as given, in order. `body` nil means "no body at all" (GET/HEAD), which is
/// different from an empty body (a POST with `Content-Length: 0`).
struct UpstreamRequest {
    var method: String
    /// Absolute `http://` or `https://` URL.
    var url: String
    var headers: [(String, String)]
    var body: [UInt8]?

    init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What the upstream finally answered (after redirects).
///
/// Header names are lower-cased so the proxy can filter hop-by-hop headers
/// without case games; repeated headers (`set-cookie`) stay separate entries
/// in arrival order, because joining them would change their meaning. Only
/// the final response's headers are kept: the client must not see the
/// headers of a redirect it never asked to follow itself.
struct UpstreamResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
}

/// Why an upstream exchange produced no response.
///
/// `reason` follows the original (Erlang) server's notation where a POSIX-ish
/// name exists (`:econnrefused`, `:nxdomain`, `:timeout`, `:econnreset`,
/// `:closed`) because clients of the proxy see it in error bodies; anything
/// else is a short human description.
struct UpstreamFailure: Error, Equatable, CustomStringConvertible {
    var reason: String
    /// This node is at its bound of transfers: the caller should retry later
    /// (503), not blame the upstream (400).
    var isOverload = false
    var description: String { reason }

    init(reason: String, isOverload: Bool = false) {
        self.reason = reason
        self.isOverload = isOverload
    }

    static func tooManyInFlight(_ bound: Int) -> UpstreamFailure {
        UpstreamFailure(reason: "too many proxied requests in flight (\(bound))", isOverload: true)
    }

    /// Past PROXY_MAX_BUFFERED_BYTES: every transfer's buffered body together is at the bound.
    static func buffersFull(limit: Int) -> UpstreamFailure {
        UpstreamFailure(reason: "upstream responses buffered by this node are at their bound (\(limit) bytes); try again later",
                        isOverload: true)
    }

    /// Past PROXY_MAX_PENDING_LOOKUPS: each lookup holds a libcurl helper thread.
    static func tooManyLookups(_ bound: Int) -> UpstreamFailure {
        UpstreamFailure(reason: "too many upstream host names being resolved (\(bound)); try again later", isOverload: true)
    }

    static let shuttingDown = UpstreamFailure(reason: "shutting down")
    static let headersTooLarge = UpstreamFailure(reason: "response headers too large")

    static func bodyTooLarge(limit: Int) -> UpstreamFailure {
        UpstreamFailure(reason: "response body over \(limit) bytes")
    }

    /// Maps a finished transfer's libcurl result to the failure the proxy
    /// reports. `osErrno` is CURLINFO_OS_ERRNO (0 when unknown), `message` the
    /// transfer's CURLOPT_ERRORBUFFER text (may be empty).
    static func from(code: CURLcode, osErrno: Int32, message: String) -> UpstreamFailure {
        let text = message.isEmpty ? String(cString: curl_easy_strerror(code)) : message
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST:
            return UpstreamFailure(reason: ":nxdomain")
        case CURLE_OPERATION_TIMEDOUT:
            return UpstreamFailure(reason: ":timeout")
        case CURLE_COULDNT_CONNECT:
            return UpstreamFailure(reason: errnoAtom(osErrno) ?? ":econnrefused")
        case CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE:
            // The server closed the connection without (a complete) response.
            return UpstreamFailure(reason: ":closed")
        case CURLE_RECV_ERROR, CURLE_SEND_ERROR:
            if osErrno == EPIPE { return UpstreamFailure(reason: ":closed") }
            return UpstreamFailure(reason: errnoAtom(osErrno) ?? ":econnreset")
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ENGINE_NOTFOUND,
             CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_SHUTDOWN_FAILED,
             CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT, CURLE_USE_SSL_FAILED:
            return UpstreamFailure(reason: "tls: \(text)")
        default:
            return UpstreamFailure(reason: text)
        }
    }

    /// The Erlang atom for the socket errors a connect or read reports.
    private static func errnoAtom(_ value: Int32) -> String? {
        switch value {
        case ECONNREFUSED: return ":econnrefused"
        case ECONNRESET: return ":econnreset"
        case ETIMEDOUT: return ":timeout"
        case EHOSTUNREACH: return ":ehostunreach"
        case ENETUNREACH: return ":enetunreach"
        case EADDRNOTAVAIL: return ":eaddrnotavail"
        case ECONNABORTED: return ":econnaborted"
        default: return nil
        }
    }
}
