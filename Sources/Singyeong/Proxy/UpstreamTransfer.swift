import CCurl
import CSystem
import Glibc

/// One exchange in flight: the libcurl easy handle with everything it points
/// at (header list, error buffer), the response collected so far, and the
/// completion.
///
/// It is also the caller's handle: the proxy cancels the exchange when the
/// HTTP caller goes away, so the upstream connection is not kept busy for nobody.
/// libcurl's write/header callbacks reach the transfer through an unretained
/// pointer; the client's table of transfers is what keeps it alive while
/// libcurl may call it.
final class UpstreamTransfer {
    /// Called at most once; nil once the transfer finished or was cancelled.
    private var completion: ((Result<UpstreamResponse, UpstreamFailure>) -> Void)?
    private(set) weak var client: UpstreamClient?
    /// Order of creation, so shutdown fails transfers in the order they started.
    let sequence: UInt64
    /// What to log about the transfer (method and URL without its query).
    let summary: String

    /// The easy handle while the transfer owns one.
    var easy: UnsafeMutableRawPointer?
    /// CURLOPT_HTTPHEADER list; libcurl reads it during the transfer, so it lives as long as `easy`.
    var headerList: UnsafeMutablePointer<curl_slist>?
    /// CURLOPT_ERRORBUFFER (CURL_ERROR_SIZE bytes).
    let errorBuffer: UnsafeMutablePointer<CChar>
    /// Set when the transfer failed before libcurl ran it (completed by the client's deferral timer).
    var deferredFailure: UpstreamFailure?

    private let maxBodyBytes: Int
    private static let maxHeaderBytes = 64 * 1024

    // Response state, reset whenever a new status line arrives (redirects, 1xx).
    private(set) var status = 0
    private(set) var headers: [(String, String)] = []
    private(set) var body: [UInt8] = []
    private var headerBytes = 0
    private var headersComplete = false
    private var checkedContentLength = false
    /// Why one of our callbacks made libcurl abort (it then reports only CURLE_WRITE_ERROR).
    private(set) var abortReason: UpstreamFailure?
    /// Body bytes counted against the client's PROXY_MAX_BUFFERED_BYTES budget.
    private var chargedBytes = 0
    /// The egress policy refused an address libcurl was about to connect to
    /// (libcurl then tries the next address, or fails with CURLE_COULDNT_CONNECT).
    private(set) var egressRefusal: String?
    /// When the transfer began, while its upstream host name may still be
    /// resolving on a libcurl helper thread; nil for IP literals and once an
    /// address is being connected (or a cached connection reused).
    var lookupStartedAt: Double?

    var isFinished: Bool { completion == nil }

    init(client: UpstreamClient, sequence: UInt64, summary: String, maxBodyBytes: Int,
         completion: @escaping (Result<UpstreamResponse, UpstreamFailure>) -> Void) {
        self.client = client
        self.sequence = sequence
        self.summary = summary
        self.maxBodyBytes = maxBodyBytes
        self.completion = completion
        errorBuffer = .allocate(capacity: Int(SY_CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(SY_CURL_ERROR_SIZE))
    }

    deinit {
        releaseCurlState()
        dropBody()
        errorBuffer.deallocate()
    }

    /// Aborts the exchange; the completion is never called. Safe to call
    /// at any time, also after the transfer finished (then it does nothing).
    func cancel() {
        guard completion != nil else { return }
        completion = nil
        client?.forget(self)
        releaseCurlState()
        dropBody()
        headers = []
    }

    /// Runs the completion (once). The caller has already detached the easy handle.
    func finish(_ result: Result<UpstreamResponse, UpstreamFailure>) {
        guard let completion else { return }
        self.completion = nil
        releaseCurlState()
        dropBody()
        headers = []
        completion(result)
    }

    /// Frees the easy handle and its header list. The easy handle must no
    /// longer be attached to the multi handle.
    func releaseCurlState() {
        if let easy {
            curl_easy_cleanup(easy)
            self.easy = nil
        }
        if let headerList {
            curl_slist_free_all(headerList)
            self.headerList = nil
        }
    }

    /// Adds one line to the CURLOPT_HTTPHEADER list. False when out of memory
    /// (the list built so far stays owned and is freed with the transfer).
    func appendHeader(_ line: String) -> Bool {
        guard let list = curl_slist_append(headerList, line) else { return false }
        headerList = list
        return true
    }

    /// The error buffer's text, without the trailing newline some messages carry.
    var errorMessage: String {
        var text = String(cString: errorBuffer)
        while text.last == "\n" || text.last == "\r" { text.removeLast() }
        return text
    }

    /// The response, once libcurl reported success.
    func takeResponse(status finalStatus: Int) -> UpstreamResponse {
        let response = UpstreamResponse(status: finalStatus != 0 ? finalStatus : status, headers: headers, body: body)
        headers = []
        // The bytes now belong to the caller's response (bounded per
        // connection by MAX_PENDING_BYTES), no longer to the upstream buffers.
        dropBody()
        return response
    }

    // MARK: libcurl callbacks (never call back into libcurl or the caller from here)

    /// One header line as libcurl received it (status line, header, blank end line, trailer).
    /// Returns false to make libcurl abort the transfer.
    func receiveHeaderLine(_ line: UnsafeRawBufferPointer) -> Bool {
        if line.starts(with: "HTTP/".utf8) {
            // A new response starts (after a redirect or a 1xx): only the final one counts.
            status = Self.parseStatus(line)
            headers.removeAll(keepingCapacity: true)
            body.removeAll(keepingCapacity: true)
            client?.releaseBuffered(chargedBytes)
            chargedBytes = 0
            // A refusal before this response belongs to an earlier hop.
            egressRefusal = nil
            headerBytes = line.count
            headersComplete = false
            checkedContentLength = false
            return true
        }
        headerBytes += line.count
        if headerBytes > Self.maxHeaderBytes {
            abortReason = .headersTooLarge
            return false
        }
        var end = line.count
        while end > 0, line[end - 1] == UInt8(ascii: "\n") || line[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        if end == 0 {
            headersComplete = true
            return true
        }
        // Lines after the blank line are chunked trailers: not part of the head.
        if headersComplete { return true }
        let first = line[0]
        if first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
            // Obsolete line folding: continues the previous header's value.
            if !headers.isEmpty {
                let more = Self.trimmed(line, 0, end)
                if !more.isEmpty { headers[headers.count - 1].1 += " " + more }
            }
            return true
        }
        guard let colon = line[0..<end].firstIndex(of: UInt8(ascii: ":")) else { return true }
        var name = [UInt8](line[0..<colon])
        for i in name.indices where name[i] >= UInt8(ascii: "A") && name[i] <= UInt8(ascii: "Z") { name[i] += 32 }
        headers.append((String(decoding: name, as: UTF8.self), Self.trimmed(line, colon + 1, end)))
        return true
    }

    /// A piece of the response body. Returns false to make libcurl abort the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if !checkedContentLength {
            checkedContentLength = true
            // Refuse an announced oversized body before buffering any of it.
            if let length = headers.last(where: { $0.0 == "content-length" }).flatMap({ Int($0.1) }) {
                if length > maxBodyBytes {
                    abortReason = .bodyTooLarge(limit: maxBodyBytes)
                    return abort()
                }
                // An announced body that cannot fit in what is left of the
                // node-wide budget is refused before any of it is buffered.
                let left = client?.bufferBudgetLeft ?? 0
                if length > left + chargedBytes {
                    abortReason = .buffersFull(limit: client?.maxBufferedBytes ?? 0)
                    return abort()
                }
                // Reserve at most 1 MiB up front: a peer's announcement is not
                // a reason to allocate its whole body before it arrives.
                body.reserveCapacity(min(length, 1 << 20, left))
            }
        }
        if body.count + bytes.count > maxBodyBytes {
            abortReason = .bodyTooLarge(limit: maxBodyBytes)
            return abort()
        }
        guard let client, client.chargeBuffered(bytes.count) else {
            abortReason = .buffersFull(limit: client?.maxBufferedBytes ?? 0)
            return abort()
        }
        chargedBytes += bytes.count
        body.append(contentsOf: bytes)
        return true
    }

    /// Gives the partial body back to the budget at once (the transfer is
    /// about to fail, and others may need the room before its completion runs).
    private func abort() -> Bool {
        dropBody()
        return false
    }

    /// libcurl is about to open a socket to `address` (after DNS, for every
    /// connection, redirects included). Returns the socket, or
    /// CURL_SOCKET_BAD when the egress policy refuses the address.
    func openSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        // Resolved (or an IP literal): no helper thread works for us any more.
        lookupStartedAt = nil
        let family = address.pointee.family
        guard let (ip, port) = IPAddress.from(sockaddr: sy_curl_sockaddr_address(address)) else {
            egressRefusal = "egress denied: address family \(family)"
            return SY_CURL_SOCKET_BAD
        }
        guard let policy = client?.egress else { return SY_CURL_SOCKET_BAD }
        if let refusal = policy.refusal(address: ip, port: port) {
            egressRefusal = refusal
            return SY_CURL_SOCKET_BAD
        }
        return socket(family, address.pointee.socktype | SY_SOCK_CLOEXEC, address.pointee.protocol)
    }

    /// A connection is ready for the request (possibly a reused one, for
    /// which no socket was opened): any lookup is over.
    func connectionReady() {
        lookupStartedAt = nil
    }

    /// Empties the body and returns its bytes to the client's budget.
    private func dropBody() {
        body = []
        client?.releaseBuffered(chargedBytes)
        chargedBytes = 0
    }

    private static func parseStatus(_ line: UnsafeRawBufferPointer) -> Int {
        // "HTTP/1.1 200 OK": the three digits after the first space.
        guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return 0 }
        var value = 0
        var index = space + 1
        while index < line.count, index < space + 4, line[index] >= UInt8(ascii: "0"), line[index] <= UInt8(ascii: "9") {
            value = value * 10 + Int(line[index] - UInt8(ascii: "0"))
            index += 1
        }
        return value
    }

    private static func trimmed(_ line: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> String {
        var lower = start
        var upper = end
        while lower < upper, line[lower] == UInt8(ascii: " ") || line[lower] == UInt8(ascii: "\t") { lower += 1 }
        while upper > lower, line[upper - 1] == UInt8(ascii: " ") || line[upper - 1] == UInt8(ascii: "\t") { upper -= 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: line[lower..<upper]), as: UTF8.self)
    }
}
