/// libFuzzer entry for the peer-link framing: frames and batch bodies from
/// arbitrary bytes must parse or be refused, never crash or over-read.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPeerFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var offset = 0
    while offset < size {
        let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
        guard let header = try? PeerFrameCodec.next(rest, maxBody: 4096) else { break }
        precondition(header.body.upperBound <= rest.count && header.frameLength <= rest.count)
        if let entries = PeerFrameCodec.batchEntries(UnsafeRawBufferPointer(rebasing: rest[header.body])) {
            for entry in entries { precondition(entry.body.upperBound <= header.body.count) }
        }
        offset += header.frameLength
    }
    _ = PeerFrameCodec.batchEntries(input)
    return 0
}
