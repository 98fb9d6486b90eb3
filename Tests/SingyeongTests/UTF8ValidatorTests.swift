import Testing
@testable import Singyeong

// The module's one UTF-8 validator (Codec/UTF8Validator.swift), in both of
// its forms: incremental (WebSocket text frames, split anywhere) and one-shot
// (MessagePack strings). The stdlib decoder is the reference.

private func utf8Bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The stdlib decoder is strict UTF-8 (RFC 3629): the reference to compare with.
private func referenceValidUTF8(_ input: [UInt8]) -> Bool {
    var iterator = input.makeIterator()
    var decoder = Unicode.UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}

/// Validates `input` in pieces ending at `splits`; true iff valid and complete.
private func validateInPieces(_ input: [UInt8], splits: [Int]) -> Bool {
    var validator = UTF8Validator()
    var start = 0
    for end in splits + [input.count] {
        let ok = input[start..<end].withUnsafeBytes { validator.validate($0) }
        if !ok { return false }
        start = end
    }
    return validator.isAtCodePointBoundary
}

@Suite struct UTF8ValidatorTests {
    /// Valid and invalid sequences (RFC 3629 §4 table), each checked against
    /// the stdlib, by the one-shot `isValid`, whole, split at every offset
    /// and fed one byte at a time (text frames split across fragments).
    @Test(arguments: [
        ([] as [UInt8], true),
        (utf8Bytes("plain ASCII that is longer than sixteen bytes, to use the fast path"), true),
        (utf8Bytes("싱경 😀 ü €"), true),
        (utf8Bytes(String(repeating: "fast path ", count: 5) + "😀" + String(repeating: "x", count: 17)), true),
        ([0x7F], true),
        ([0xC2, 0x80], true),  // U+0080, smallest 2-byte
        ([0xDF, 0xBF], true),  // U+07FF
        ([0xE0, 0xA0, 0x80], true),  // U+0800, smallest 3-byte
        ([0xED, 0x9F, 0xBF], true),  // U+D7FF, just below the surrogates
        ([0xEE, 0x80, 0x80], true),  // U+E000, just above them
        ([0xEF, 0xBF, 0xBF], true),  // U+FFFF
        ([0xF0, 0x90, 0x80, 0x80], true),  // U+10000, smallest 4-byte
        ([0xF4, 0x8F, 0xBF, 0xBF], true),  // U+10FFFF
        // Overlong encodings.
        ([0xC0, 0x80], false),
        ([0xC1, 0xBF], false),
        ([0xE0, 0x80, 0x80], false),
        ([0xE0, 0x9F, 0xBF], false),
        ([0xF0, 0x80, 0x80, 0x80], false),
        ([0xF0, 0x8F, 0xBF, 0xBF], false),
        // UTF-16 surrogates.
        ([0xED, 0xA0, 0x80], false),  // U+D800
        ([0xED, 0xBF, 0xBF], false),  // U+DFFF
        ([0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80], false),  // CESU-8 pair
        // Above U+10FFFF, and bytes that never occur.
        ([0xF4, 0x90, 0x80, 0x80], false),
        ([0xF5, 0x80, 0x80, 0x80], false),
        ([0xF5], false),
        ([0xFE], false),
        ([0xFF], false),
        // Stray continuation bytes, and a lead byte without its continuation.
        ([0x80], false),
        ([0xBF], false),
        ([0x41, 0x80, 0x41], false),
        ([0xC3, 0x41], false),
        ([0xE2, 0x28, 0xA1], false),
        // Truncated: the input ends inside a code point.
        ([0xC2], false),
        ([0xE2, 0x82], false),
        ([0xF0, 0x9F, 0x98], false),
        (utf8Bytes("text, then a cut ") + [0xF0, 0x9F], false),
        ([0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64], false),
    ])
    func knownSequences(input: [UInt8], valid: Bool) {
        #expect(referenceValidUTF8(input) == valid)
        #expect(input.withUnsafeBytes { UTF8Validator.isValid($0) } == valid)
        #expect(validateInPieces(input, splits: []) == valid)
        for k in 0...input.count {
            #expect(validateInPieces(input, splits: [k]) == valid, "split at \(k)")
        }
        #expect(validateInPieces(input, splits: Array(0...input.count)) == valid)
    }

    /// An invalid byte anywhere in a long ASCII run (inside or outside the
    /// 8/16-byte fast path words) is found.
    @Test func invalidByteAtEveryPositionOfAsciiRun() {
        for position in 0..<48 {
            var input = [UInt8](repeating: 0x41, count: 48)
            input[position] = 0xFF
            #expect(!validateInPieces(input, splits: []), "0xFF at \(position)")
            #expect(!input.withUnsafeBytes { UTF8Validator.isValid($0) }, "0xFF at \(position)")
            input[position] = 0xC3  // lead byte with 'A' as continuation: invalid
            #expect(!validateInPieces(input, splits: []), "0xC3 at \(position)")
        }
    }

    /// The validator must not look past the bytes it is given (the fast path
    /// once read one byte too far after a whole number of 8/16-byte words).
    @Test func readsOnlyTheGivenBytes() {
        for n in 0..<40 {
            let input = [UInt8](repeating: 0x41, count: n) + [0xFF]
            var validator = UTF8Validator()
            let ok = input.withUnsafeBytes { validator.validate(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            #expect(ok && validator.isAtCodePointBoundary, "\(n) ASCII bytes")
        }
    }

    @Test func failureIsSticky() {
        var validator = UTF8Validator()
        #expect(![0xFF].withUnsafeBytes { validator.validate($0) })
        #expect(!utf8Bytes("ok").withUnsafeBytes { validator.validate($0) })
        #expect(!validator.isAtCodePointBoundary)
        validator.reset()
        #expect(utf8Bytes("ok").withUnsafeBytes { validator.validate($0) })
        #expect(validator.isAtCodePointBoundary)
    }

    /// Every 1- and 2-byte input, agrees with the stdlib.
    @Test func exhaustiveTwoBytes() {
        for a in 0...255 {
            #expect(validateInPieces([UInt8(a)], splits: []) == referenceValidUTF8([UInt8(a)]))
            for b in 0...255 {
                let input: [UInt8] = [UInt8(a), UInt8(b)]
                let expected = referenceValidUTF8(input)
                if validateInPieces(input, splits: []) != expected
                    || input.withUnsafeBytes({ UTF8Validator.isValid($0) }) != expected {
                    Issue.record("disagree on \(input)")
                }
            }
        }
    }

    /// All multibyte lead bytes with every second byte and boundary-ish later
    /// bytes, validated whole and split after the second byte.
    @Test func multibyteLeadsAgainstStdlib() {
        let interesting: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
        for a in 0xE0...0xF4 {
            for b in 0...255 {
                for c in interesting {
                    for d in [0x80, 0x41] as [UInt8] {
                        let input: [UInt8] = [UInt8(a), UInt8(b), c, d]
                        let expected = referenceValidUTF8(input)
                        if validateInPieces(input, splits: []) != expected
                            || validateInPieces(input, splits: [2]) != expected {
                            Issue.record("disagree on \(input)")
                        }
                    }
                }
            }
        }
    }
}
