/// The frame a routed message arrives in (protocol.md §8):
/// `{"op":4,"t":EVENT,"d":{"target":null,"nonce":N,"payload":P},"ts":MS}`.
///
/// This is the per-message hot path, so it is built by hand: the exact size
/// is computed first and the WebSocket frame is written in one allocation,
/// copying the payload exactly once, into a buffer from the loop's
/// `FramePool` (no allocation in steady state). When sender and recipient share an
/// encoding, `nonce` and `payload` are the sender's own bytes (for JSON, the
/// very text it sent); otherwise they are transcoded straight from those
/// bytes into a scratch buffer first.
enum DispatchFrame {
    /// Builds the frame from a routed message's encoded pieces (a local
    /// client's frame, a peer's message, or one that waited for peers).
    /// Pieces in another encoding are transcoded (JSON pieces must be
    /// followed by readable padding, as client and peer read buffers and
    /// `OwnedRoutedMessage` are). Nil when a piece does not transcode,
    /// which validated pieces always do.
    static func make(_ message: RoutedMessage, for encoding: PayloadEncoding, ts: Int64, scratch: inout [UInt8],
                     pool: FramePool) -> OutboundBytes? {
        if message.encoding == encoding {
            return assemble(event: message.event, nonce: message.nonce, payload: message.payload, encoding: encoding, ts: ts, pool: pool)
        }
        scratch.removeAll(keepingCapacity: true)
        defer { releaseIfLarge(&scratch) }
        // Straight from the bytes, no tape (MessagePackToJSON.swift, JSONToMessagePack.swift).
        func transcode(_ piece: UnsafeRawBufferPointer) -> Range<Int>? {
            let start = scratch.count
            let transcoded = switch message.encoding {
            case .json: StreamingTranscoder.appendMessagePack(fromJSON: piece, to: &scratch)
            case .msgpack: StreamingTranscoder.appendJSON(fromMessagePack: piece, to: &scratch)
            }
            return transcoded ? start..<scratch.count : nil
        }
        var nonceRange: Range<Int>?
        if let nonce = message.nonce {
            guard let r = transcode(nonce) else { return nil }
            nonceRange = r
        }
        guard let payloadRange = transcode(message.payload) else { return nil }
        return scratch.withUnsafeBytes { all in
            assemble(event: message.event, nonce: nonceRange.map { UnsafeRawBufferPointer(rebasing: all[$0]) },
                     payload: UnsafeRawBufferPointer(rebasing: all[payloadRange]), encoding: encoding, ts: ts, pool: pool)
        }
    }

    /// The scratch buffer lives as long as the gateway: one transcoded
    /// 16 MiB payload must not keep its pages for good.
    private static func releaseIfLarge(_ scratch: inout [UInt8]) {
        guard scratch.capacity > 1 << 20 else { return }
        scratch = []
        scratch.reserveCapacity(4096)
    }

    /// Builds the frame from already-encoded payload bytes (events the server
    /// originates, such as CLIENT_CONNECTED).
    static func make(event: StaticString, encodedPayload: UnsafeRawBufferPointer, for encoding: PayloadEncoding, ts: Int64,
                     pool: FramePool) -> OutboundBytes {
        assemble(event: event, nonce: nil, payload: encodedPayload, encoding: encoding, ts: ts, pool: pool)
    }

    private static func assemble(event: StaticString, nonce: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer,
                                 encoding: PayloadEncoding, ts: Int64, pool: FramePool) -> OutboundBytes {
        let eventBytes = UnsafeRawBufferPointer(start: event.utf8Start, count: event.utf8CodeUnitCount)
        switch encoding {
        case .json:
            // {"op":4,"t":"EVENT","d":{"target":null,"nonce":N,"payload":P},"ts":MS}
            let head1: StaticString = "{\"op\":4,\"t\":\""
            let head2: StaticString = "\",\"d\":{\"target\":null,\"nonce\":"
            let mid: StaticString = ",\"payload\":"
            let tail: StaticString = "},\"ts\":"
            let nullText: StaticString = "null"
            let tsValue = UInt64(max(ts, 0))
            let nonceCount = nonce?.count ?? nullText.utf8CodeUnitCount
            let bodyLength = head1.utf8CodeUnitCount + eventBytes.count + head2.utf8CodeUnitCount + nonceCount
                + mid.utf8CodeUnitCount + payload.count + tail.utf8CodeUnitCount + RawWriter.decimalCount(tsValue) + 1
            return frame(opcode: .text, bodyLength: bodyLength, pool: pool) { w in
                w.put(head1); w.put(eventBytes); w.put(head2)
                if let nonce { w.put(nonce) } else { w.put(nullText) }
                w.put(mid); w.put(payload); w.put(tail)
                w.putDecimal(tsValue)
                w.put(UInt8(ascii: "}"))
            }
        case .msgpack:
            // fixmap(4) "op" 4 "t" EVENT "d" fixmap(3){"target" nil "nonce" N "payload" P} "ts" uint64
            let eventHeaderLength = eventBytes.count < 32 ? 1 : 2
            let head = MessagePackPieces.head, dHead = MessagePackPieces.dHead
            let payloadKey = MessagePackPieces.payloadKey, tsKey = MessagePackPieces.tsKey
            let nonceCount = nonce?.count ?? 1
            let bodyLength = head.count + eventHeaderLength + eventBytes.count + dHead.count + nonceCount
                + payloadKey.count + payload.count + tsKey.count + 8
            return frame(opcode: .binary, bodyLength: bodyLength, pool: pool) { w in
                w.put(head)
                if eventBytes.count < 32 { w.put(0xA0 | UInt8(eventBytes.count)) } else { w.put(0xD9); w.put(UInt8(eventBytes.count)) }
                w.put(eventBytes); w.put(dHead)
                if let nonce { w.put(nonce) } else { w.put(0xC0) }
                w.put(payloadKey); w.put(payload); w.put(tsKey)
                withUnsafeBytes(of: UInt64(bitPattern: ts).bigEndian) { w.put($0) }
            }
        }
    }

    /// Takes header + body in one buffer from `pool` and lets `write` fill
    /// the body.
    private static func frame(opcode: WebSocketOpcode, bodyLength: Int, pool: FramePool,
                              _ write: (inout RawWriter) -> Void) -> OutboundBytes {
        let headerLength = WebSocketFrameEncoder.headerLength(payloadLength: bodyLength)
        return pool.make(count: headerLength + bodyLength) { destination in
            WebSocketFrameEncoder.writeHeader(opcode: opcode, fin: true, payloadLength: bodyLength, to: destination)
            var writer = RawWriter(cursor: destination + headerLength)
            write(&writer)
            assert(writer.cursor == destination + headerLength + bodyLength, "dispatch frame size mismatch")
        }
    }

}

/// Constant MessagePack fragments of the dispatch frame, built once.
private enum MessagePackPieces {
    static let head: [UInt8] = [0x84, 0xA2, 0x6F, 0x70, 0x04, 0xA1, 0x74]
    static let dHead: [UInt8] = [0xA1, 0x64, 0x83, 0xA6] + Array("target".utf8) + [0xC0, 0xA5] + Array("nonce".utf8)
    static let payloadKey: [UInt8] = [0xA7] + Array("payload".utf8)
    static let tsKey: [UInt8] = [0xA2, 0x74, 0x73, 0xCF]
}

/// Sequential writes into a frame being filled.
struct RawWriter {
    var cursor: UnsafeMutableRawPointer

    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        cursor.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        cursor += bytes.count
    }

    mutating func put(_ s: StaticString) {
        put(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    mutating func put(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { put($0) }
    }

    mutating func put(_ byte: UInt8) {
        cursor.storeBytes(of: byte, as: UInt8.self)
        cursor += 1
    }

    /// Decimal digits of `value`, written back to front.
    mutating func putDecimal(_ value: UInt64) {
        let n = RawWriter.decimalCount(value)
        var v = value
        for i in stride(from: n - 1, through: 0, by: -1) {
            (cursor + i).storeBytes(of: UInt8(ascii: "0") + UInt8(v % 10), as: UInt8.self)
            v /= 10
        }
        cursor += n
    }

    static func decimalCount(_ value: UInt64) -> Int {
        var n = 1
        var v = value
        while v >= 10 { v /= 10; n += 1 }
        return n
    }
}

