/// Vouches for spans of JSON it has seen validated, so a repeated SEND /
/// BROADCAST target is walked once rather than per message
/// (`SY_JSON_SKIP_KNOWN_TARGET`, issue 13). Owned here, below the query
/// cache that implements it (Routing), which holds only targets that
/// decoded and compiled.
protocol KnownSpans: AnyObject {
    /// Whether exactly these bytes were validated before as one JSON value.
    /// Must never answer true otherwise: the decoder then skips them
    /// unchecked.
    func isKnownJSON(_ bytes: UnsafeRawBufferPointer) -> Bool
}
