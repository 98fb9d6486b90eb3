/// Request-body rules shared by the JSON API routes (rest.md §2.2,
/// Recommended): the body is JSON when `Content-Type` is JSON or absent, a
/// non-object JSON body counts as `{}`, other content types count as an empty
/// body, and URL query-string parameters are merged underneath (the body
/// wins). Unparsable JSON is a 400 `{"errors":{"detail":"Bad Request"}}`.
///
/// REST requests are not on the per-message path, so the body becomes an
/// owned `Value` here (hand-written because it is these few spec rules, over
/// the gateway's simdjson decoder).
enum RESTBody {
    /// The merged request fields, or the 400 to answer.
    static func fields(_ head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                       body: UnsafeRawBufferPointer) -> Result<ValueObject, HTTPResponse> {
        var object = ValueObject()
        if let query = head.query {
            for (name, value) in URLQuery.pairs(UnsafeRawBufferPointer(rebasing: buffer[query])) {
                object[name] = .string(value)
            }
        }
        if isJSON(head, in: buffer) && body.count > 0 {
            var tape = DocumentTape()
            do {
                try JSONTapeDecoder.decode(body, into: &tape)
            } catch {
                return .failure(.errorDetail(400, "Bad Request"))
            }
            if tape.rootKind == .object, case .object(let fields) = tape.value(tape.root) {
                for (name, value) in fields.members { object[name] = value }
            }
        }
        return .success(object)
    }

    /// `text` as a JSON array of strings (discovery's `q`), or nil.
    static func stringArray(_ text: String) -> [String]? {
        var tape = DocumentTape()
        do {
            // A copy with simdjson's read-ahead padding.
            try JSONTapeDecoder.decode(copying: text.utf8, into: &tape)
        } catch {
            return nil
        }
        guard tape.rootKind == .array else { return nil }
        var strings: [String] = []
        for element in tape.elements(of: tape.root) {
            guard tape.kind(element) == .string else { return nil }
            strings.append(tape.string(element))
        }
        return strings
    }

    /// JSON when Content-Type is absent, `application/json` or `*/*+json`
    /// (case-insensitive, parameters after `;` ignored). Compared as bytes.
    static func isJSON(_ head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> Bool {
        guard let range = head.firstValue(of: "content-type", in: buffer) else { return true }
        var lower = range.lowerBound, upper = range.upperBound
        if let semicolon = buffer[range].firstIndex(of: UInt8(ascii: ";")) { upper = semicolon }
        func blank(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
        while lower < upper && blank(buffer[lower]) { lower += 1 }
        while upper > lower && blank(buffer[upper - 1]) { upper -= 1 }
        let type = buffer[lower..<upper].map { $0 | (($0 >= 65 && $0 <= 90) ? 0x20 : 0) }
        return type.elementsEqual("application/json".utf8) || (type.count > 5 && type.suffix(5).elementsEqual("+json".utf8))
    }

}
