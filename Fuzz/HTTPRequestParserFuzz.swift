// libFuzzer harness for HTTPRequestParser. Build and run (standard library only):
//   swiftc -O -sanitize=fuzzer,address -parse-as-library \
//     Sources/Singyeong/HTTP/HTTPRequestParser.swift Sources/Singyeong/HTTP/HTTPRequestHead.swift \
//     Fuzz/HTTPRequestParserFuzz.swift -o /tmp/httpfuzz
//   /tmp/httpfuzz -max_total_time=60

/// Small limits so that the 431/413 paths are reachable with short inputs; chosen by the
/// first input byte so the fuzzer explores both these and the server defaults.
private let smallLimits = HTTPParserLimits(maxHeadSize: 200, maxHeaderCount: 4, maxBodySize: 1000)

/// Parses the input in one shot and as a growing prefix, and checks that both agree and
/// that every range the parser reports lies inside the head it reported.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPRequestParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let limits = size > 0 && data[0] & 1 == 1 ? smallLimits : HTTPParserLimits()

    var full = HTTPRequestHead()
    let fullResult = HTTPRequestParser.parseHead(input, limits: limits, into: &full)
    if case .complete = fullResult { checkRanges(full, size: size, limits: limits) }
    if case .failure(let e) = fullResult {
        precondition([400, 413, 431, 505].contains(e.status), "unexpected status")
    }

    // Each prefix is copied to the END of a buffer of exactly `size` bytes, so a read past
    // the prefix runs off the allocation and AddressSanitizer reports it.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(size, 1), alignment: 1)
    defer { scratch.deallocate() }
    var head = HTTPRequestHead()
    var incremental = HTTPParseResult.incomplete
    var decidedAt = size
    for n in 0...size {
        let start = scratch.baseAddress! + (scratch.count - n)
        if n > 0 { start.copyMemory(from: data, byteCount: n) }
        let prefix = UnsafeRawBufferPointer(start: start, count: n)
        incremental = HTTPRequestParser.parseHead(prefix, limits: limits, into: &head)
        if case .incomplete = incremental { continue }
        decidedAt = n
        break
    }
    precondition(incremental == fullResult, "incremental result differs from one-shot result")
    if case .complete = fullResult {
        precondition(head == full, "incremental head differs from one-shot head")
        precondition(decidedAt == full.headLength, "completed before or after the head's end")
    }

    // Reusing the head for a second request must give the same answer (reset is complete).
    var reused = full
    let again = HTTPRequestParser.parseHead(input, limits: limits, into: &reused)
    precondition(again == fullResult && (fullResult != .complete || reused == full), "reused head differs")
    return 0
}

/// Every range must lie inside the head, and path/query inside the target.
private func checkRanges(_ head: HTTPRequestHead, size: Int, limits: HTTPParserLimits) {
    let bound = head.headLength
    precondition(bound > 0 && bound <= size && bound <= limits.maxHeadSize, "headLength out of bounds")
    func inside(_ r: Range<Int>, _ outer: Range<Int>) -> Bool {
        r.lowerBound >= outer.lowerBound && r.upperBound <= outer.upperBound
    }
    let all = 0..<bound
    precondition(inside(head.methodRange, all) && !head.methodRange.isEmpty, "method range")
    precondition(inside(head.target, all) && !head.target.isEmpty, "target range")
    precondition(inside(head.path, head.target), "path range")
    if let q = head.query { precondition(inside(q, head.target), "query range") }
    precondition(head.versionMinor == 0 || head.versionMinor == 1, "version")
    precondition(head.headers.count <= limits.maxHeaderCount, "header count")
    for field in head.headers {
        precondition(inside(field.name, all) && !field.name.isEmpty, "header name range")
        precondition(inside(field.value, all), "header value range")
    }
    if let length = head.contentLength { precondition(length >= 0 && length <= limits.maxBodySize, "content length") }
    precondition(!(head.isChunked && head.contentLength != nil), "CL with TE")
}
