/// One top-level metadata key of every client of an application, as
/// `MetadataScalar`s in the order of `ClientStore.Application.clients`.
///
/// Built when a query first needs the key (`Application.column`) and kept
/// true by the store on every add, remove, metadata change and heartbeat,
/// so a column test scans plain memory instead of each client's metadata.
///
/// A string is kept as a hash of its bytes, so a string `$eq` hit is a hash
/// match. The column also keeps, per hash, one string with that hash and
/// how many clients hold that hash; while no two different strings with
/// one hash were ever stored (`hashesCollide`), a query checks its literal
/// against that one string once (`isExact`) and its hits are then exact,
/// with no look at each candidate's metadata.
final class ScalarColumn {
    let key: String
    let hash: UInt64
    /// Read by every query that uses the key; exempt from dynamic
    /// exclusivity checking like `Application.clients`, and for the same
    /// reason: one thread, changed only through the methods below, which
    /// call out to nothing but String hashing and comparison.
    @exclusivity(unchecked) private(set) var scalars: [MetadataScalar] = []
    /// The application's query clock when a query last used the column.
    var lastUsed: UInt64
    /// Per string hash held: a string with that hash, and the number of
    /// clients holding a string with that hash.
    /// Read by every string `$eq` query (`isExact`); exempt from dynamic
    /// exclusivity checking: one thread, and `hold`, `drop` and `isExact`
    /// call nothing but `ExactKey.bytesEqual` while they touch it.
    @exclusivity(unchecked) private var strings: [UInt64: (text: String, count: Int)] = [:]
    /// Two different strings with one hash were stored at some point: hits
    /// must be confirmed per candidate for as long as the column lives.
    private(set) var hashesCollide = false {
        didSet { lastExact = nil }
    }
    /// `isExact`'s last answer: SEND after SEND asks about the same literal,
    /// and the answer only changes when a hash starts or stops being held
    /// (or a collision is noted), where this is cleared. Saves a hashed
    /// dictionary lookup per message.
    @exclusivity(unchecked) private var lastExact: (hash: UInt64, text: String, exact: Bool)?

    init(key: String, hash: UInt64, clients: [ClientRecord], now: UInt64) {
        self.key = key
        self.hash = hash
        self.lastUsed = now
        scalars.reserveCapacity(clients.count)
        for record in clients { append(record) }
    }

    /// Adds the record's entry at the end.
    func append(_ record: ClientRecord) {
        scalars.append(hold(record))
    }

    /// Re-reads the entry of the record at position `index`.
    func update(_ record: ClientRecord, at index: Int) {
        drop(scalars[index])
        scalars[index] = hold(record)
    }

    /// Removes position `index`, moving the last one there (as the store
    /// does with its clients).
    func removeSwapping(at index: Int) {
        drop(scalars[index])
        let last = scalars.removeLast()
        if index < scalars.count { scalars[index] = last }
    }

    /// Sets position `index` to an integer (heartbeat time: no string).
    func setInteger(_ value: Int64, at index: Int) {
        drop(scalars[index])
        scalars[index] = MetadataScalar(.int(value))
    }

    /// Whether a hit of a string `$eq` for `text` (hash `textHash`) is a
    /// match without confirmation.
    func isExact(text: String, textHash: UInt64) -> Bool {
        guard !hashesCollide else { return false }
        if let last = lastExact, last.hash == textHash, ExactKey.bytesEqual(last.text, text) { return last.exact }
        let exact: Bool
        if let held = strings[textHash] {
            exact = ExactKey.bytesEqual(held.text, text)
        } else {
            exact = true  // no client holds that hash: no hits
        }
        lastExact = (textHash, text, exact)
        return exact
    }

    /// Distinct string hashes held (bounded by the number of clients).
    var heldStringCount: Int { strings.count }

    /// Marks the column as holding colliding hashes (also for tests that
    /// forge collisions).
    func noteCollision() { hashesCollide = true }

    /// Overwrites a scalar without bookkeeping: only for tests that forge
    /// collisions.
    func forge(_ scalar: MetadataScalar, at index: Int) { scalars[index] = scalar }

    /// The record's entry, reduced, with a string counted in `strings`.
    private func hold(_ record: ClientRecord) -> MetadataScalar {
        let value = record.metadata.entry(key, hash: hash)?.value
        let scalar = MetadataScalar(value)
        if scalar.kind == .string, case .string(let text)? = value {
            if let held = strings[scalar.bits] {
                if !hashesCollide && !ExactKey.bytesEqual(held.text, text) { hashesCollide = true }
                strings[scalar.bits] = (held.text, held.count + 1)
            } else {
                strings[scalar.bits] = (text, 1)
                lastExact = nil
            }
        }
        return scalar
    }

    /// Uncounts a scalar that is going away.
    private func drop(_ scalar: MetadataScalar) {
        guard scalar.kind == .string, let held = strings[scalar.bits] else { return }
        if held.count > 1 {
            strings[scalar.bits] = (held.text, held.count - 1)
        } else {
            strings[scalar.bits] = nil
            lastExact = nil
        }
    }

    /// Appends the position of every client that passes `test` and whose
    /// restricted flag `includeRestricted` allows. The integer case runs
    /// in its own loop with the bounds in registers: the whole cost of a
    /// SEND to an application of 10,000 clients is this loop.
    func scan(_ test: ScalarTest, restricted: UnsafeBufferPointer<Bool>, includeRestricted: Bool,
              into indices: inout [Int32]) {
        scalars.withUnsafeBufferPointer { scalars in
            let count = min(scalars.count, restricted.count)
            if let (low, high, negated) = test.integerRange {
                for i in 0..<count {
                    let s = scalars[i]
                    let hit: Bool
                    if s.kind == .int {
                        let x = Int64(bitPattern: s.bits)
                        hit = (x >= low && x <= high) != negated
                    } else {
                        hit = test.matches(s)
                    }
                    if hit && (includeRestricted || !restricted[i]) { indices.append(Int32(truncatingIfNeeded: i)) }
                }
            } else {
                for i in 0..<count where test.matches(scalars[i]) && (includeRestricted || !restricted[i]) {
                    indices.append(Int32(truncatingIfNeeded: i))
                }
            }
        }
    }
}
