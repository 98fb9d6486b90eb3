// Shared by the JSON and MessagePack fuzz targets (lazy payload decoding).
/// An unexpanded node sits where the full tape has "d" → "payload" holding a
/// container, with the same span; everything else is node for node the same.
func checkUnexpanded(_ lazy: DocumentTape, full: DocumentTape) {
    var i = 0, j = 0
    while i < lazy.nodeCount {
        precondition(j < full.nodeCount, "lazy tape longer than the full one")
        precondition(lazy.span(i) == full.span(j), "spans differ at lazy node \(i)")
        if lazy.kind(i) == .unexpanded {
            precondition(full.kind(j) == .array || full.kind(j) == .object, "unexpanded scalar")
            j = full.next(j)
        } else {
            precondition(lazy.kind(i) == full.kind(j), "kinds differ at lazy node \(i)")
            j += 1
        }
        i += 1
    }
    precondition(j == full.nodeCount, "lazy tape shorter than the full one")
}

/// The node bound (MAX_FRAME_VALUES): a decode limited to exactly the
/// document's node count succeeds with the same tape; one fewer is
/// `.tooManyValues`. `decode(limit)` decodes with that bound.
func checkNodeLimit(_ tape: DocumentTape, decode: (Int) throws(DocumentDecodeError) -> DocumentTape) {
    let n = tape.nodeCount
    do {
        let same = try decode(n)
        precondition(same.nodeCount == n, "node count differs under a limit of exactly \(n)")
    } catch {
        fatalError("a limit of exactly \(n) nodes refused the document: \(error)")
    }
    guard n >= 2 else { return }  // a root scalar or empty container: nothing to stop
    do {
        _ = try decode(n - 1)
        fatalError("a limit of \(n - 1) nodes accepted a document of \(n)")
    } catch .tooManyValues(let limit) {
        precondition(limit == n - 1)
    } catch {
        fatalError("a limit of \(n - 1) nodes gave \(error), not tooManyValues")
    }
}
