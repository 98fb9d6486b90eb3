/// One top-level metadata key of every client of an application, as
/// `MetadataScalar`s in the order of `ClientStore.Application.clients`.
///
/// Built when a query first needs the key (`Application.column`) and kept
/// true by the store on every add, remove, metadata change and heartbeat,
/// so a column test scans plain memory instead of each client's metadata.
final class ScalarColumn {
    let key: String
    let hash: UInt64
    /// Read by every query that uses the key; exempt from dynamic
    /// exclusivity checking like `Application.clients`, and for the same
    /// reason: one thread, changed only by ClientStore with plain array
    /// operations that call out to nothing.
    @exclusivity(unchecked) var scalars: [MetadataScalar] = []
    /// The application's query clock when a query last used the column.
    var lastUsed: UInt64

    init(key: String, hash: UInt64, clients: [ClientRecord], now: UInt64) {
        self.key = key
        self.hash = hash
        self.lastUsed = now
        scalars.reserveCapacity(clients.count)
        for record in clients { scalars.append(scalar(of: record)) }
    }

    /// The record's entry under `key`, reduced.
    @inline(__always)
    func scalar(of record: ClientRecord) -> MetadataScalar {
        MetadataScalar(record.metadata.entry(key, hash: hash)?.value)
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
