import COpenSSL
import Glibc

/// One server-side TLS session on a non-blocking socket.
///
/// OpenSSL reads and writes the socket itself (`SSL_set_fd`); every call
/// reports whether it needs the socket readable or writable, and the
/// connection arms its libev watcher accordingly. The handshake is just the
/// first few of those calls, bounded by the connection's handshake deadline.
final class TLSSession {
    let ssl: OpaquePointer

    /// Result of one non-blocking TLS operation.
    enum Progress {
        case done(Int)
        case wantRead
        case wantWrite
        /// The peer closed the TLS session (close_notify) or the socket.
        case closed
        case failed(String)
    }

    init?(context: TLSContext, fd: Int32, client: Bool = false) {
        guard let ssl = SSL_new(context.raw) else { return nil }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        if client { SSL_set_connect_state(ssl) } else { SSL_set_accept_state(ssl) }
    }

    /// 32 bytes of RFC 5705 / 8446 keying material for `label`: equal on both
    /// ends of this session only, so a proof that includes it cannot be
    /// relayed onto another TLS session.
    func exportKeyingMaterial(label: String) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = label.withCString { l in
            SSL_export_keying_material(ssl, &out, out.count, l, strlen(l), nil, 0, 0)
        }
        return ok == 1 ? out : nil
    }

    deinit { SSL_free(ssl) }

    var isHandshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    func handshake() -> Progress {
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 { return .done(0) }
        return classify(r)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Progress {
        ERR_clear_error()
        let r = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if r > 0 { return .done(Int(r)) }
        return classify(r)
    }

    func write(_ buffer: UnsafeRawBufferPointer) -> Progress {
        ERR_clear_error()
        let r = SSL_write(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if r > 0 { return .done(Int(r)) }
        return classify(r)
    }

    /// Bytes already decrypted inside OpenSSL; they will not make the socket
    /// readable again, so the reader must drain them.
    var pendingPlaintext: Int { Int(SSL_pending(ssl)) }

    /// Sends close_notify (best effort, never blocks).
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    private func classify(_ r: Int32) -> Progress {
        let code = SSL_get_error(ssl, r)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let e = errno
            if ERR_peek_error() == 0 && (e == 0 || e == ECONNRESET || e == EPIPE) { return .closed }
            if e == EAGAIN || e == EINTR { return .wantRead }
            return .failed("TLS I/O error: \(String(cString: strerror(e)))")
        default:
            return .failed(TLSContext.drainErrors())
        }
    }
}
