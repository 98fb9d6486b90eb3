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
