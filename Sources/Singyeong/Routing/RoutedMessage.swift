/// What a routed message carries to its recipients, in the sender's
/// encoding: the event name and the encoded `nonce` and `payload` values.
///
/// Borrowed form (`RoutedMessage`) for the synchronous local path, where the
/// bytes are still in the sender's read buffer; owned form
/// (`OwnedRoutedMessage`) once routing has to wait for peer nodes, because the
/// read buffer is reused as soon as the frame handler returns.
struct RoutedMessage {
    let event: StaticString
    let encoding: PayloadEncoding
    let nonce: UnsafeRawBufferPointer?
    let payload: UnsafeRawBufferPointer
}

/// A `RoutedMessage` whose bytes it owns (one copy, made only when routing
/// goes asynchronous).
final class OwnedRoutedMessage {
    let event: StaticString
    let encoding: PayloadEncoding
    private let bytes: [UInt8]
    private let nonceRange: Range<Int>?
    private let payloadRange: Range<Int>
    /// Bytes of the whole client frame when copied from one (for no_route).
    private let sourceCount: Int?

    /// Copies a whole client frame (one copy), remembering where the nonce
    /// and payload are, so a later `no_route` can still echo the frame.
    init(event: StaticString, encoding: PayloadEncoding, source: UnsafeRawBufferPointer,
         nonce: Range<Int>?, payload: Range<Int>) {
        self.event = event
        self.encoding = encoding
        var bytes = [UInt8](source)
        bytes.append(contentsOf: repeatElement(0, count: InputBuffer.padding))
        self.bytes = bytes
        nonceRange = nonce
        payloadRange = payload
        sourceCount = source.count
    }

    /// The client frame this message was copied from, padded for decoding.
    func withSource<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard let sourceCount else { return nil }
        return bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<sourceCount])) }
    }

    init(copying message: RoutedMessage) {
        sourceCount = nil
        event = message.event
        encoding = message.encoding
        var bytes: [UInt8] = []
        bytes.reserveCapacity((message.nonce?.count ?? 0) + message.payload.count + InputBuffer.padding)
        if let nonce = message.nonce {
            bytes.append(contentsOf: nonce)
            nonceRange = 0..<nonce.count
        } else {
            nonceRange = nil
        }
        let start = bytes.count
        bytes.append(contentsOf: message.payload)
        payloadRange = start..<bytes.count
        // Padding: a JSON recipient of a MessagePack piece (or the reverse)
        // decodes these bytes, and simdjson reads past the end.
        bytes.append(contentsOf: repeatElement(0, count: InputBuffer.padding))
        self.bytes = bytes
    }

    func withMessage<R>(_ body: (RoutedMessage) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            body(RoutedMessage(event: event, encoding: encoding,
                               nonce: nonceRange.map { UnsafeRawBufferPointer(rebasing: raw[$0]) },
                               payload: UnsafeRawBufferPointer(rebasing: raw[payloadRange])))
        }
    }
}
