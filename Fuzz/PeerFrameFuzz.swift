/// libFuzzer entry for the peer-link framing: frames, batch bodies and
/// frame bodies from arbitrary bytes must parse or be refused, never crash or
/// over-read. Bodies go through `PeerFrameCodec.decodeBody` with one reused
/// tape, as on a link; whatever it accepts must leave a root node for the
/// handlers (a body it let through empty would trip the check below).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPeerFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var tape = DocumentTape()
    var offset = 0
    while offset < size {
        let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
        guard let header = try? PeerFrameCodec.next(rest, maxBody: 4096) else { break }
        precondition(header.body.upperBound <= rest.count && header.frameLength <= rest.count)
        let body = UnsafeRawBufferPointer(rebasing: rest[header.body])
        if let entries = PeerFrameCodec.batchEntries(body) {
            for entry in entries {
                precondition(entry.body.upperBound <= header.body.count)
                if (try? PeerFrameCodec.decodeEntry(.query, UnsafeRawBufferPointer(rebasing: body[entry.body]), into: &tape)) != nil {
                    precondition(tape.rootKind != nil)
                }
            }
        }
        if let type = PeerFrameType(rawValue: header.type), let tail = try? PeerFrameCodec.decodeBody(type, body, into: &tape) {
            if type.hasMessagePackBody {
                precondition(tape.rootKind != nil, "accepted an empty \(type) body")
                // What the handlers do first.
                if let root = tape.rootObject { _ = tape.member(of: root, named: "t") }
            } else {
                precondition(tape.isEmpty && tail.isEmpty)
            }
            if let base = tail.baseAddress, let start = body.baseAddress {
                precondition(base >= start && base + tail.count <= start + body.count)
            }
        }
        offset += header.frameLength
    }
    _ = PeerFrameCodec.batchEntries(input)
    return 0
}
