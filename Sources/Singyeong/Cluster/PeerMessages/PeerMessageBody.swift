/// A peer frame body that encodes as one MessagePack value: `bytes` is
/// written once here for every kind, each giving only `encode(into:)` and,
/// when its size depends on what it carries, a better starting capacity.
protocol PeerMessageBody {
    func encode(into w: inout FrameWriter)
    /// Bytes to reserve for the body (FrameWriter's default unless given).
    var encodedCapacity: Int { get }
}

extension PeerMessageBody {
    var encodedCapacity: Int { 128 }

    /// The body as sent.
    var bytes: [UInt8] {
        var w = FrameWriter(encoding: .msgpack, capacity: encodedCapacity)
        encode(into: &w)
        return w.bytes
    }
}
