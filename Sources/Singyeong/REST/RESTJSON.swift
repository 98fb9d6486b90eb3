/// JSON pieces the REST endpoints write themselves, byte for byte as the
/// gateway's `FrameWriter` writes them in JSON (both go through
/// `JSONEmitter`), so REST needs no gateway type to build a body.
enum RESTJSON {
    /// `s` as a quoted JSON string.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { JSONEmitter.appendString(UnsafeRawBufferPointer($0), to: &out) }
    }

    /// A JSON response body (`application/json; charset=utf-8`).
    static func response(_ status: Int, _ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("content-type", "application/json; charset=utf-8")], body: body)
    }
}
