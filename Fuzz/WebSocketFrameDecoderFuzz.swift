// libFuzzer target for the WebSocket decoder, built standalone (stdlib and Glibc only):
//   swiftc -O -sanitize=fuzzer,address -parse-as-library \
//     Sources/Singyeong/WebSocket/WebSocketFrameDecoder.swift \
//     Sources/Singyeong/WebSocket/WebSocketFrameEncoder.swift \
//     Sources/Singyeong/Codec/UTF8Validator.swift \
//     Sources/Singyeong/Loop/InputBuffer.swift \
//     Fuzz/WebSocketFrameDecoderFuzz.swift -o /tmp/wsfuzz
//   /tmp/wsfuzz -max_total_time=60

/// Message limit for the fuzz run: small, so the 1009 path is reachable.
private let fuzzMaxMessageSize = 1 << 20

/// Strict UTF-8 check by the stdlib decoder, to cross-check UTF8Validator.
private func referenceValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var iterator = bytes.makeIterator()
    var decoder = Unicode.UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}

/// Whether `inner` lies entirely inside `outer` (empty buffers always do).
private func isInside(_ inner: UnsafeRawBufferPointer, _ outer: UnsafeMutableRawBufferPointer) -> Bool {
    guard inner.count > 0 else { return true }
    guard let innerStart = inner.baseAddress, let outerStart = outer.baseAddress else { return false }
    return innerStart >= UnsafeRawPointer(outerStart) && innerStart + inner.count <= UnsafeRawPointer(outerStart + outer.count)
}

/// Checks what the decoder promises about each event.
private func checkEvent(_ event: WebSocketEvent, buffer: UnsafeMutableRawBufferPointer) {
    switch event {
    case let .message(opcode, payload):
        precondition(opcode == .text || opcode == .binary, "message with control opcode")
        precondition(payload.count <= fuzzMaxMessageSize, "message over the limit")
        if opcode == .text { precondition(referenceValidUTF8(payload), "invalid UTF-8 delivered as text") }
        // Touch every byte so ASan sees a dangling/short payload pointer.
        var sum: UInt8 = 0
        for byte in payload { sum &+= byte }
        _ = sum
    case let .ping(payload), let .pong(payload):
        precondition(payload.count <= 125, "control payload over 125")
        precondition(isInside(payload, buffer), "control payload not in caller's buffer")
    case let .close(code, reason):
        precondition(reason.count <= 123, "close reason too long")
        precondition(isInside(reason, buffer), "close reason not in caller's buffer")
        if let code { precondition(WebSocketCloseCode.isValidOnWire(code), "invalid close code delivered") }
        else { precondition(reason.count == 0, "reason without code") }
        precondition(referenceValidUTF8(reason), "invalid UTF-8 close reason delivered")
    }
}

/// libFuzzer entry point. Byte 0 picks the read sizes, the rest is the byte
/// stream a client sends; it is fed like a connection does (keep unconsumed
/// bytes, append the next read). Also cross-checks UTF8Validator against the
/// stdlib on the raw input, whole and split.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocketDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let seed = Int(data[0])
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)

    // UTF-8 validator differential check.
    let expectedValid = referenceValidUTF8(input)
    var validator = UTF8Validator()
    precondition((validator.validate(input) && validator.isAtCodePointBoundary) == expectedValid, "validator disagrees")
    let split = input.count == 0 ? 0 : seed % (input.count + 1)
    validator.reset()
    let firstOK = validator.validate(UnsafeRawBufferPointer(rebasing: input[..<split]))
    let secondOK = firstOK && validator.validate(UnsafeRawBufferPointer(rebasing: input[split...]))
    precondition((secondOK && validator.isAtCodePointBoundary) == expectedValid, "split validator disagrees")

    // Decoder, fed in reads of varying size.
    let pending = UnsafeMutableRawPointer.allocate(byteCount: max(input.count, 1), alignment: 1)
    defer { pending.deallocate() }
    var pendingCount = 0
    var inputOffset = 0
    var step = 0
    var assembler = WebSocketMessageAssembler(maxMessageSize: fuzzMaxMessageSize)
    defer { assembler.reset() }
    while inputOffset < input.count {
        let left = input.count - inputOffset
        let readSize = seed == 0 ? left : min(left, 1 + (seed &* (step &+ 1) &+ step &* 13) % (seed &* 2))
        (pending + pendingCount).copyMemory(from: input.baseAddress! + inputOffset, byteCount: readSize)
        pendingCount += readSize
        inputOffset += readSize
        step += 1

        let buffer = UnsafeMutableRawBufferPointer(start: pending, count: pendingCount)
        let consumed: Int
        do throws(WebSocketProtocolError) {
            consumed = try assembler.consume(buffer) { checkEvent($0, buffer: buffer) }
        } catch {
            let code = error.closeCode.rawValue
            precondition(code == 1002 || code == 1007 || code == 1009, "unexpected close code")
            return 0
        }
        precondition(consumed >= 0 && consumed <= pendingCount, "consumed more than available")
        pendingCount -= consumed
        if pendingCount > 0 {
            pending.copyMemory(from: pending + consumed, byteCount: pendingCount)
        }
        if let hint = assembler.bytesNeededHint {
            precondition(hint > pendingCount, "hint does not ask for more bytes")
            precondition(hint <= pendingCount + 14 + fuzzMaxMessageSize, "hint beyond one frame")
        }
        // Presenting the kept partial frame again must be a no-op (it was not
        // unmasked or otherwise touched).
        if pendingCount > 0 {
            let again = UnsafeMutableRawBufferPointer(start: pending, count: pendingCount)
            let hintBefore = assembler.bytesNeededHint
            do throws(WebSocketProtocolError) {
                let n = try assembler.consume(again) { _ in preconditionFailure("event from a partial frame") }
                precondition(n == 0, "partial frame consumed on re-presentation")
                precondition(assembler.bytesNeededHint == hintBefore, "hint changed on re-presentation")
            } catch {
                preconditionFailure("partial frame failed on re-presentation")
            }
        }
    }
    return 0
}
