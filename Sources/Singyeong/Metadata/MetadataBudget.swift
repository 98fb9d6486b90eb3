/// How much metadata one client may hold (issue 10: every piece of
/// per-client state is bounded), and the one way its size is measured.
///
/// Size is an estimate of what the node stores, not of the encoded bytes, so
/// that a MessagePack list of a million 1-byte integers costs what it really
/// costs once decoded: every value, list element, map member name and key
/// counts `nodeCost` bytes (about a stored `Value`), plus the UTF-8 bytes of
/// every string. The same measure applies to the decoded tape (checked before
/// anything is converted, so an oversized update is refused in time linear in
/// its size and allocates nothing) and to validated values (for the
/// projected total after a merge).
struct MetadataBudget: Sendable, Equatable {
    /// Non-reserved keys one client may hold.
    var maxKeys: Int
    /// Largest single entry: key plus value, measured as above.
    var maxValueSize: Int
    /// All of a client's non-reserved entries together.
    var maxTotalSize: Int

    /// What one stored value costs besides its string bytes.
    /// (`Settings.storedValueBytes` repeats it; SettingsTests checks.)
    static let nodeCost = 24

    /// Settings with no practical limit (unit tests that do not test budgets).
    static let unlimited = MetadataBudget(maxKeys: .max, maxValueSize: .max, maxTotalSize: .max)

    /// Cost of one entry: its key and its value.
    static func entryCost(key: String, value: Value) -> Int {
        nodeCost + key.utf8.count + cost(of: value)
    }

    /// Cost of a decoded value (recursive; depth is bounded by the decoders).
    static func cost(of value: Value) -> Int {
        switch value {
        case .null, .bool, .int, .uint, .double: return nodeCost
        case .string(let s): return nodeCost + s.utf8.count
        case .array(let elements):
            var total = nodeCost
            for element in elements { total += cost(of: element) }
            return total
        case .object(let object):
            var total = nodeCost
            for (name, member) in object.members { total += nodeCost + name.utf8.count + cost(of: member) }
            return total
        }
    }

    /// Cost of the subtree at `node` of a tape: one pass over its nodes.
    /// Repeated member names count every time (a decoded object keeps one),
    /// so this is never below `cost(of: tape.value(node))`.
    static func cost(ofNode node: Int, in tape: DocumentTape) -> Int {
        var total = 0
        for i in node..<tape.next(node) {
            let n = tape.node(i)
            total += nodeCost
            if n.kind == .string { total += Int(n.stringLength) }
        }
        return total
    }

    /// Checks an update object on the tape (IDENTIFY `metadata`,
    /// UPDATE_METADATA `d`) before it is converted: the number of members and
    /// each entry's and the whole update's size. Returns the failure or nil.
    /// O(size of the object).
    func check(updateObject object: Int, in tape: DocumentTape) -> MetadataBudgetFailure? {
        let members = tape.count(object)
        if members > maxKeys { return .tooManyKeys(members, limit: maxKeys) }
        var total = 0
        for (keyNode, entryNode) in tape.members(of: object) {
            // Only the `value` of a well-formed entry is stored; a malformed
            // entry is measured whole (validation refuses it anyway).
            let valueNode = tape.member(of: entryNode, named: "value") ?? entryNode
            let cost = Self.nodeCost + Int(tape.node(keyNode).stringLength) + Self.cost(ofNode: valueNode, in: tape)
            if cost > maxValueSize {
                return .valueTooLarge(key: MetadataBudgetFailure.shortened(tape.string(keyNode)), cost, limit: maxValueSize)
            }
            total += cost
            if total > maxTotalSize { return .tooLarge(total, limit: maxTotalSize) }
        }
        return nil
    }

    /// Checks the metadata a client would hold after `update` is applied to
    /// `current` (the state including updates not yet flushed). O(size of
    /// the update): lookups in `current` are hashed or bounded scans.
    func check(_ update: MetadataUpdate, appliedTo current: ClientMetadata,
               strategy: MetadataUpdateStrategy) -> MetadataBudgetFailure? {
        var keys = strategy == .replace ? 0 : current.clientKeyCount
        var total = strategy == .replace ? 0 : current.clientCost
        for entry in update.entries {
            if entry.cost > maxValueSize {
                return .valueTooLarge(key: MetadataBudgetFailure.shortened(entry.key), entry.cost, limit: maxValueSize)
            }
            if strategy == .merge, let i = current.index(of: entry.key) {
                total -= current.entries[i].cost
            } else {
                keys += 1
            }
            total += entry.cost
        }
        if keys > maxKeys { return .tooManyKeys(keys, limit: maxKeys) }
        if total > maxTotalSize { return .tooLarge(total, limit: maxTotalSize) }
        return nil
    }
}

/// Why metadata was refused by its budget; `text` goes to the client.
enum MetadataBudgetFailure: Error, Equatable, Sendable {
    case tooManyKeys(Int, limit: Int)
    case valueTooLarge(key: String, Int, limit: Int)
    case tooLarge(Int, limit: Int)

    /// A key as quoted in an error: at most 128 bytes of it (a key may be
    /// the very thing that is too large).
    static func shortened(_ key: String) -> String {
        let utf8 = key.utf8
        guard utf8.count > 128 else { return key }
        return String(decoding: utf8.prefix(128), as: UTF8.self) + "…"
    }

    var text: String {
        switch self {
        case .tooManyKeys(let n, let limit):
            return "too many metadata keys: \(n) (at most \(limit) per client)"
        case .valueTooLarge(let key, let n, let limit):
            return "\(key): value too large: \(n) bytes stored (at most \(limit))"
        case .tooLarge(let n, let limit):
            return "metadata too large: \(n) bytes stored (at most \(limit) per client)"
        }
    }
}
