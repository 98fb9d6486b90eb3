"""TLS listener: https and wss, protocol versions, SIGHUP certificate
reload, the TLS handshake timeout and start-up validation."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import threading
import time

import pytest
from websockets.sync.client import connect

from sy_helpers import (HOST, RawConn, assert_still_serving, cert_der, client_context, free_port, http_get,
                        make_cert)


@pytest.fixture
def certs(tmp_path):
    cert, key = make_cert(tmp_path / "live", cn="first.singyeong.test")
    return cert, key


@pytest.fixture
def tls_server(spawn, certs):
    cert, key = certs
    return spawn("--tls-cert", str(cert), "--tls-key", str(key))


def wss(port: int, ctx: ssl.SSLContext):
    return connect(f"wss://127.0.0.1:{port}/gateway/websocket", ssl=ctx, open_timeout=5, close_timeout=3,
                   ping_interval=None)


def peer_der(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def test_https_api_version(tls_server, certs):
    ctx = client_context(cafile=certs[0])
    r = http_get(tls_server.port, "/api/version", tls=ctx)
    assert r.status == 200
    assert r.header("content-type") == "application/json; charset=utf-8"
    assert r.json()["api"] == "v1"


def test_https_keep_alive_and_404(tls_server, certs):
    ctx = client_context(cafile=certs[0])
    with RawConn.open(tls_server.port, tls=ctx, server_hostname="127.0.0.1") as c:
        c.send(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        r1, r2 = c.read_response(), c.read_response()
    assert r1.status == 404 and r1.json() == {"code": 404, "error": "not found"}
    assert r2.status == 200


def test_wss_hello_and_ping(tls_server, certs):
    with wss(tls_server.port, client_context(cafile=certs[0])) as ws:
        hello = json.loads(ws.recv(timeout=3))
        assert hello["op"] == 0 and hello["d"] == {"heartbeat_interval": 45000} and hello["t"] is None
        assert ws.ping(b"tls").wait(3)


def test_plain_http_to_tls_port_gets_no_http_response(tls_server, certs):
    with RawConn.open(tls_server.port) as c:
        c.send(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, closed = c.recv_to_eof(3.0)
    assert not data.startswith(b"HTTP/"), f"TLS port answered plain HTTP: {data[:80]!r}"
    assert closed, "plain-text client left connected on the TLS port"
    assert_still_serving(tls_server.port, tls=client_context(cafile=certs[0]))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_work(tls_server, certs, version):
    ctx = client_context(cafile=certs[0], minimum=version, maximum=version)
    with socket.create_connection((HOST, tls_server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            s.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200")


def old_tls_client_context() -> ssl.SSLContext:
    ctx = client_context(minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def local_client_can_speak_tls11(cert, key) -> tuple[bool, str]:
    """Checks against a throw-away Python TLS 1.1 server whether this
    machine's OpenSSL lets a client handshake TLS 1.1 at all."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        sctx.minimum_version = ssl.TLSVersion.TLSv1
        sctx.maximum_version = ssl.TLSVersion.TLSv1_1
        sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        sctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, ValueError) as e:
        return False, f"local OpenSSL cannot configure TLS 1.1: {e}"
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve():
        try:
            conn, _ = listener.accept()
            with sctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except Exception:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with old_tls_client_context().wrap_socket(raw, server_hostname="localhost") as s:
                ok = s.version() in ("TLSv1", "TLSv1.1")
                s.sendall(b"x")
                return ok, f"negotiated {s.version()}"
    except (ssl.SSLError, OSError) as e:
        return False, f"local OpenSSL refuses a TLS 1.1 handshake even with itself: {e}"
    finally:
        t.join(2)
        listener.close()


def test_tls11_and_older_refused(tls_server, certs):
    ok, why = local_client_can_speak_tls11(*certs)
    if not ok:
        pytest.skip(why)
    with socket.create_connection((HOST, tls_server.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with old_tls_client_context().wrap_socket(raw, server_hostname="localhost") as s:
                pytest.fail(f"server accepted a {s.version()} handshake")
    assert_still_serving(tls_server.port, tls=client_context(cafile=certs[0]))


def test_tls_handshake_timeout(spawn, certs):
    cert, key = certs
    s = spawn("--tls-cert", str(cert), "--tls-key", str(key), "--handshake-timeout", "500")
    with RawConn.open(s.port) as c:
        start = time.monotonic()
        data, closed = c.recv_to_eof(3.0)
        elapsed = time.monotonic() - start
    assert closed and elapsed <= 2.0, f"silent TCP client on the TLS port not dropped (closed={closed}, {elapsed:.2f}s)"
    assert_still_serving(s.port, tls=client_context(cafile=cert))


def test_tls_partial_client_hello_times_out(spawn, certs):
    cert, key = certs
    s = spawn("--tls-cert", str(cert), "--tls-key", str(key), "--handshake-timeout", "500")
    with RawConn.open(s.port) as c:
        c.send(b"\x16\x03\x01\x02\x00\x01")  # start of a ClientHello record, then nothing
        start = time.monotonic()
        _, closed = c.recv_to_eof(3.0)
        elapsed = time.monotonic() - start
    assert closed and elapsed <= 2.0, f"stalled ClientHello not dropped (closed={closed}, {elapsed:.2f}s)"


def test_missing_cert_file_fails_startup(cli, tmp_path, certs):
    _, key = certs
    r = cli("--port", str(free_port()), "--bind", HOST, "--tls-cert", str(tmp_path / "missing.pem"),
            "--tls-key", str(key))
    assert r.returncode != 0
    assert "TLS_CERT" in r.stderr, r.stderr


def test_cert_without_key_fails_startup(cli, certs):
    r = cli("--port", str(free_port()), "--bind", HOST, "--tls-cert", str(certs[0]))
    assert r.returncode != 0
    assert "TLS_KEY" in r.stderr, r.stderr


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def test_sighup_reloads_certificate(spawn, certs, tmp_path):
    cert, key = certs
    first_der = cert_der(cert)
    s = spawn("--tls-cert", str(cert), "--tls-key", str(key))
    assert peer_der(s.port) == first_der

    old = wss(s.port, client_context(cafile=cert))
    try:
        assert json.loads(old.recv(timeout=3))["op"] == 0

        # Replace both files with a new certificate and key, then SIGHUP.
        new_cert, new_key = make_cert(tmp_path / "second", cn="second.singyeong.test")
        second_der = cert_der(new_cert)
        assert second_der != first_der
        shutil.copyfile(new_key, key)
        shutil.copyfile(new_cert, cert)
        s.signal(signal.SIGHUP)
        assert wait_for(lambda: peer_der(s.port) == second_der, 3.0), \
            "after SIGHUP new connections still get the old certificate"
        assert s.alive()
        assert old.ping(b"old connection").wait(3), "connection opened before the reload stopped answering"
        r = http_get(s.port, "/api/version", tls=client_context(cafile=new_cert))
        assert r.status == 200

        # A broken file: the reload fails, is logged, the second cert stays.
        before = len(s.stderr())
        cert.write_text("-----BEGIN CERTIFICATE-----\nthis is not a certificate\n-----END CERTIFICATE-----\n")
        s.signal(signal.SIGHUP)

        def failure_logged():
            text = s.stderr()[before:].lower()
            return "reload" in text and ("error" in text or "fail" in text)

        assert wait_for(failure_logged, 3.0), f"no reload error logged; new stderr: {s.stderr()[before:]!r}"
        assert s.alive(), "server exited after a failed reload"
        assert peer_der(s.port) == second_der, "after a failed reload the previous certificate is not served"
        assert old.ping(b"still").wait(3)
    finally:
        old.close()
