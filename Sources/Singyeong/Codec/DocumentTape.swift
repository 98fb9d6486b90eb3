/// One decoded gateway frame as a flat pre-order tape of nodes, plus an arena
/// holding every string's unescaped UTF-8 bytes.
///
/// Written by `JSONTapeDecoder` (simdjson) or `MessagePackTapeDecoder`, read by
/// navigation (`member(of:named:)`, `elements(of:)`), converted piecewise into
/// owned `Value`s (`value(_:)`), and forwarded either as the source bytes of a
/// node (`span(_:)`) or transcoded from the tape (TapeEncoders.swift).
///
/// Layout: a node is followed by its subtree. An array's elements follow it in
/// order; an object's members follow it as (key string node, value node)
/// pairs. `next` is the index just past a node's subtree, so siblings are
/// skipped in O(1). Node 0 is the root.
///
/// Reuse: `removeAll()` keeps both buffers' storage; once a tape has grown to
/// the largest frame seen, decoding another frame allocates nothing. Node and
/// arena storage only ever grow (the logical sizes are `nodeCount` and
/// `stringCount`); a connection that once received a huge frame keeps that
/// memory until the tape is dropped — call `shrink(maxNodes:maxStringBytes:)`
/// if that matters.
///
/// Stdlib only (no Foundation, no C modules): the MessagePack fuzzer compiles
/// this file on its own.
struct DocumentTape {
    /// Node kinds. Raw values match `SY_KIND_*` in csimdjson.h.
    enum Kind: UInt8 {
        case null = 0, bool, int, uint, double, string, array, object
        /// A container that was validated but not decoded (a lazily decoded
        /// SEND payload, see the decoders' `lazyPayload`): only its span is
        /// meaningful. Forward its bytes, or decode the span to look inside.
        case unexpanded
    }

    /// Whether a decoder left an `.unexpanded` node in this tape.
    private(set) var hasUnexpanded = false
    /// While set, appends are dropped: the MessagePack decoder validates a
    /// lazy payload by decoding it with nothing written (as the JSON walker
    /// does with its `dry` flag), so both paths apply the very same rules.
    var dropsAppends = false

    /// One node, 32 bytes, laid out exactly like `sy_tape_node` (csimdjson.h)
    /// so the JSON decoder writes nodes straight into the tape's storage.
    /// Field order matters: do not reorder.
    struct Node {
        var kind: Kind
        /// Elements of an array / members of an object; 0 for scalars.
        var count: UInt32
        /// Index just past this node's subtree.
        var next: UInt32
        /// Source bytes of the value: `[spanStart, spanEnd)`.
        var spanStart: UInt32
        var spanEnd: UInt32
        /// Byte count of a string.
        var stringLength: UInt32
        /// Int64 / UInt64 / Double bit pattern, 0 or 1 for bool, arena offset for a string.
        var bits: UInt64
    }

    /// Node storage; only `0..<nodeCount` is meaningful.
    private(set) var nodeStorage: [Node] = []
    /// Arena storage; only `0..<stringCount` is meaningful.
    private(set) var stringStorage: [UInt8] = []
    private(set) var nodeCount: Int = 0
    private(set) var stringCount: Int = 0

    init() {}

    /// Forgets the decoded frame, keeping the storage.
    mutating func removeAll() {
        nodeCount = 0
        stringCount = 0
        hasUnexpanded = false
        dropsAppends = false
    }

    /// Releases storage beyond the given sizes (after an unusually large frame).
    mutating func shrink(maxNodes: Int, maxStringBytes: Int) {
        removeAll()
        if nodeStorage.count > maxNodes { nodeStorage = [] }
        if stringStorage.count > maxStringBytes { stringStorage = [] }
    }

    var isEmpty: Bool { nodeCount == 0 }
    /// Node 0. Only meaningful when the tape is not empty: `kind(root)` on an
    /// empty tape reads past `nodeCount` (a crash, or a stale node of an
    /// earlier frame, since storage is reused). Where a tape may be empty,
    /// ask `rootKind` / `rootObject` instead.
    var root: Int { 0 }
    /// The root's kind; nil when nothing is decoded.
    var rootKind: Kind? { nodeCount > 0 ? nodeStorage[0].kind : nil }
    /// The root when it is an object (every frame's shape); nil when it is
    /// not, or when the tape is empty.
    var rootObject: Int? { rootKind == .object ? 0 : nil }

    /// The meaningful nodes.
    var nodes: ArraySlice<Node> { nodeStorage[0..<nodeCount] }

    @inline(__always) func node(_ i: Int) -> Node { nodeStorage[i] }
    @inline(__always) func kind(_ i: Int) -> Kind { nodeStorage[i].kind }
    /// Elements of an array, members of an object, 0 otherwise.
    @inline(__always) func count(_ i: Int) -> Int { Int(nodeStorage[i].count) }
    /// Index just past the subtree of node `i`.
    @inline(__always) func next(_ i: Int) -> Int { Int(nodeStorage[i].next) }
    /// Byte range of node `i` in the decoded input.
    @inline(__always) func span(_ i: Int) -> Range<Int> {
        let n = nodeStorage[i]
        return Int(n.spanStart)..<Int(n.spanEnd)
    }

    func isNull(_ i: Int) -> Bool { kind(i) == .null }
    func bool(_ i: Int) -> Bool? { kind(i) == .bool ? nodeStorage[i].bits != 0 : nil }
    /// Only for `.int` nodes (a `.uint` is above Int64.max by construction).
    func int64(_ i: Int) -> Int64? { kind(i) == .int ? Int64(bitPattern: nodeStorage[i].bits) : nil }
    func uint64(_ i: Int) -> UInt64? {
        switch kind(i) {
        case .uint: return nodeStorage[i].bits
        case .int: let v = Int64(bitPattern: nodeStorage[i].bits); return v >= 0 ? UInt64(v) : nil
        default: return nil
        }
    }
    func double(_ i: Int) -> Double? { kind(i) == .double ? Double(bitPattern: nodeStorage[i].bits) : nil }

    /// Calls `body` with the unescaped UTF-8 bytes of string node `i` (empty for non-strings).
    func withStringBytes<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let n = nodeStorage[i]
        guard n.kind == .string else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try stringStorage.withUnsafeBytes { arena in
            try body(UnsafeRawBufferPointer(rebasing: arena[Int(n.bits)..<Int(n.bits) + Int(n.stringLength)]))
        }
    }

    /// Whether node `i` is a string with exactly these bytes. No allocation.
    func isString(_ i: Int, equalTo literal: StaticString) -> Bool {
        let n = nodeStorage[i]
        guard n.kind == .string, Int(n.stringLength) == literal.utf8CodeUnitCount else { return false }
        return stringBytesEqual(offset: Int(n.bits), literal.utf8Start, literal.utf8CodeUnitCount)
    }

    /// Whether node `i` is a string with exactly these bytes.
    func isString(_ i: Int, equalTo bytes: UnsafeRawBufferPointer) -> Bool {
        let n = nodeStorage[i]
        guard n.kind == .string, Int(n.stringLength) == bytes.count else { return false }
        guard let base = bytes.baseAddress else { return true }
        return stringBytesEqual(offset: Int(n.bits), base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }

    /// Unsafe-buffer reads (no per-byte check in release builds), all inside
    /// `offset..<offset + count`, which is checked against the arena first.
    private func stringBytesEqual(offset: Int, _ other: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        if count == 0 { return true }
        return stringStorage.withUnsafeBufferPointer { arena in
            guard offset >= 0, count <= arena.count - offset else { return false }
            for k in 0..<count where arena[offset + k] != other[k] { return false }
            return true
        }
    }

    /// The string at node `i` (allocates unless short); "" for non-strings.
    func string(_ i: Int) -> String {
        withStringBytes(i) { String(decoding: $0, as: UTF8.self) }
    }

    /// The value node of the member `name` of object node `object`; if the
    /// name repeats, the last one wins. nil when absent or not an object.
    ///
    /// The hottest lookup of every frame (`op`, `t`, `d`, each query key), so
    /// the loop reads nodes without per-read bounds checks (BENCHMARKS.md,
    /// "Checked release build"). Every read is still in range, whatever the
    /// tape holds: `end` ≤ `nodeStorage.count` (clamped once), each read is
    /// at `key` or `key + 1` right after checking `key + 1 < end`, and `key`
    /// is never negative (it starts at `object + 1` ≥ 1 and then comes from
    /// a `UInt32` field).
    @inline(__always)
    func member(of object: Int, named name: StaticString) -> Int? {
        guard kind(object) == .object else { return nil }  // checked: `object` is in range
        let end = min(next(object), nodeStorage.count)
        let wanted = name.utf8CodeUnitCount
        var remaining = count(object)
        return nodeStorage.withUnsafeBufferPointer { nodes -> Int? in
            guard let base = nodes.baseAddress else { return nil }
            var found: Int?
            var key = object + 1
            while remaining > 0 && key + 1 < end {
                let k = base[key]
                if k.kind == .string, Int(k.stringLength) == wanted,
                   stringBytesEqual(offset: Int(k.bits), name.utf8Start, wanted) {
                    found = key + 1
                }
                key = Int(base[key + 1].next)
                remaining -= 1
            }
            return found
        }
    }

    /// Element node indices of array node `array` (empty for non-arrays).
    func elements(of array: Int) -> Elements {
        Elements(tape: self, first: array + 1, count: kind(array) == .array ? count(array) : 0)
    }

    /// (key, value) node indices of object node `object` in source order,
    /// repeated names included (empty for non-objects).
    func members(of object: Int) -> Members {
        Members(tape: self, first: object + 1, count: kind(object) == .object ? count(object) : 0)
    }

    struct Elements: Sequence, IteratorProtocol {
        let tape: DocumentTape
        var position: Int
        var remaining: Int
        init(tape: DocumentTape, first: Int, count: Int) { self.tape = tape; position = first; remaining = count }
        mutating func next() -> Int? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            let i = position
            position = tape.next(i)
            return i
        }
    }

    struct Members: Sequence, IteratorProtocol {
        let tape: DocumentTape
        var position: Int
        var remaining: Int
        init(tape: DocumentTape, first: Int, count: Int) { self.tape = tape; position = first; remaining = count }
        mutating func next() -> (key: Int, value: Int)? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            let key = position
            position = tape.next(key + 1)
            return (key, key + 1)
        }
    }

    /// Owned conversion of the subtree at `i` (allocates). Repeated object
    /// names keep the last value.
    func value(_ i: Int) -> Value {
        let n = nodeStorage[i]
        switch n.kind {
        case .null: return .null
        case .bool: return .bool(n.bits != 0)
        case .int: return .int(Int64(bitPattern: n.bits))
        case .uint: return .uint(n.bits)
        case .double: return .double(Double(bitPattern: n.bits))
        case .string: return .string(string(i))
        case .array:
            var out: [Value] = []
            out.reserveCapacity(Int(n.count))
            for e in elements(of: i) { out.append(value(e)) }
            return .array(out)
        case .object:
            var object = ValueObject()
            for (k, v) in members(of: i) { object[string(k)] = value(v) }
            return .object(object)
        case .unexpanded:
            preconditionFailure("converting an unexpanded node: decode its span first")
        }
    }

    // MARK: Writing (decoders)

    /// Ensures storage for at least `nodes` nodes and `stringBytes` arena bytes
    /// (used by the JSON decoder, which writes through pointers).
    ///
    /// New storage is left uninitialized (both element types are trivial,
    /// and only what a decoder writes below `nodeCount`/`stringCount` is ever
    /// read): the JSON decoder reserves the whole input's length for strings,
    /// and filling that with zeros touched every page of it even when the
    /// frame's strings were a few bytes (a lazily decoded payload).
    mutating func reserveStorage(nodes: Int, stringBytes: Int) {
        if nodeStorage.count < nodes {
            nodeStorage = Self.grown(nodeStorage, keeping: nodeCount, to: max(nodes, nodeStorage.count * 2))
        }
        if stringStorage.count < stringBytes {
            stringStorage = Self.grown(stringStorage, keeping: stringCount, to: max(stringBytes, stringStorage.count * 2))
        }
    }

    /// A copy of `old`'s first `keeping` elements in storage of `count`
    /// elements, the rest uninitialized.
    private static func grown<T: BitwiseCopyable>(_ old: [T], keeping: Int, to count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            old.withUnsafeBufferPointer { source in
                if keeping > 0 { buffer.baseAddress!.update(from: source.baseAddress!, count: keeping) }
            }
            initialized = count
        }
    }

    /// Raw access for the JSON decoder: storage pointers and capacities.
    mutating func withStorage<R>(
        _ body: (UnsafeMutableBufferPointer<Node>, UnsafeMutableBufferPointer<UInt8>) throws -> R
    ) rethrows -> R {
        try nodeStorage.withUnsafeMutableBufferPointer { nodes in
            try stringStorage.withUnsafeMutableBufferPointer { strings in try body(nodes, strings) }
        }
    }

    /// Becomes a copy of `other`'s nodes and strings, in this tape's own
    /// storage (no allocation once it is large enough; plain assignment
    /// would share `other`'s arrays and copy them on the next write).
    mutating func copyContents(of other: DocumentTape) {
        reserveStorage(nodes: other.nodeCount, stringBytes: other.stringCount)
        nodeStorage.withUnsafeMutableBufferPointer { to in
            other.nodeStorage.withUnsafeBufferPointer { from in
                if other.nodeCount > 0 { to.baseAddress!.update(from: from.baseAddress!, count: other.nodeCount) }
            }
        }
        stringStorage.withUnsafeMutableBufferPointer { to in
            other.stringStorage.withUnsafeBufferPointer { from in
                if other.stringCount > 0 { to.baseAddress!.update(from: from.baseAddress!, count: other.stringCount) }
            }
        }
        nodeCount = other.nodeCount
        stringCount = other.stringCount
        hasUnexpanded = other.hasUnexpanded
        dropsAppends = false
    }

    /// Replaces node `i`'s span `[start, oldEnd)` by `[start, newEnd)` and
    /// moves every span boundary at or after `oldEnd` by the difference: the
    /// tape of the same document with node `i`'s text replaced (node `i`
    /// must be opaque, `.unexpanded`, so that nothing else changes).
    mutating func resizeSpan(of i: Int, to newEnd: Int) {
        let oldEnd = Int(nodeStorage[i].spanEnd)
        let delta = newEnd - oldEnd
        nodeStorage.withUnsafeMutableBufferPointer { nodes in
            for n in 0..<nodeCount {
                if Int(nodes[n].spanStart) >= oldEnd { nodes[n].spanStart = UInt32(Int(nodes[n].spanStart) + delta) }
                if Int(nodes[n].spanEnd) >= oldEnd { nodes[n].spanEnd = UInt32(Int(nodes[n].spanEnd) + delta) }
            }
        }
    }

    /// Sets the logical sizes after a decoder wrote into `withStorage`.
    mutating func setCounts(nodes: Int, stringBytes: Int, hasUnexpanded: Bool) {
        precondition(nodes <= nodeStorage.count && stringBytes <= stringStorage.count)
        self.hasUnexpanded = hasUnexpanded
        nodeCount = nodes
        stringCount = stringBytes
    }

    /// Appends a node; returns its index.
    @inline(__always)
    mutating func appendNode(_ kind: Kind, spanStart: Int, spanEnd: Int = 0, bits: UInt64 = 0, stringLength: Int = 0) -> Int {
        if dropsAppends { return -1 }
        let i = nodeCount
        let node = Node(kind: kind, count: 0, next: UInt32(truncatingIfNeeded: i + 1),
                        spanStart: UInt32(truncatingIfNeeded: spanStart), spanEnd: UInt32(truncatingIfNeeded: spanEnd),
                        stringLength: UInt32(truncatingIfNeeded: stringLength), bits: bits)
        if i < nodeStorage.count { nodeStorage[i] = node } else { nodeStorage.append(node) }
        nodeCount = i + 1
        return i
    }

    /// Appends an `.unexpanded` node for the value at `span`.
    mutating func appendUnexpanded(spanStart: Int, spanEnd: Int) {
        _ = appendNode(.unexpanded, spanStart: spanStart, spanEnd: spanEnd)
        hasUnexpanded = true
    }

    /// Completes a container node once its subtree has been appended.
    @inline(__always)
    mutating func finishContainer(_ i: Int, count: Int, spanEnd: Int) {
        if dropsAppends { return }
        nodeStorage[i].count = UInt32(truncatingIfNeeded: count)
        nodeStorage[i].next = UInt32(truncatingIfNeeded: nodeCount)
        nodeStorage[i].spanEnd = UInt32(truncatingIfNeeded: spanEnd)
    }

    /// Copies string bytes into the arena; returns their offset.
    @inline(__always)
    mutating func appendStringBytes(_ bytes: UnsafeRawBufferPointer) -> Int {
        if dropsAppends { return 0 }
        let offset = stringCount
        let end = offset + bytes.count
        if end > stringStorage.count {
            stringStorage.append(contentsOf: repeatElement(0, count: max(end, stringStorage.count * 2) - stringStorage.count))
        }
        if bytes.count > 0 {
            stringStorage.withUnsafeMutableBytes { arena in
                (arena.baseAddress! + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
        }
        stringCount = end
        return offset
    }
}

/// Why a frame could not be decoded. `detail` is short, for logs and error
/// frames; decoding never allocates except to build this error.
enum DocumentDecodeError: Error, Equatable, CustomStringConvertible {
    /// simdjson rejected the input (`code` is simdjson's error_code, 0 for
    /// checks made by csimdjson itself, e.g. the depth limit).
    case invalidJSON(code: Int32, detail: String)
    case invalidMessagePack(detail: String)
    /// The document needs more than `limit` nodes (the caller's bound on
    /// what one input may cost); decoding stopped there.
    case tooManyValues(limit: Int)

    var detail: String {
        switch self {
        case .invalidJSON(_, let d): return d
        case .invalidMessagePack(let d): return d
        case .tooManyValues(let limit): return "more than \(limit) values"
        }
    }

    var description: String { detail }
}
