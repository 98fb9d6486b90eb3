"""TLS settings a security scanner accepts, on the real listener and on the
peer-link dialer: TLS 1.2 only with ECDHE key exchange and AEAD ciphers (no
static RSA, no CBC, no finite-field DHE), TLS 1.3 with OpenSSL's default
suites, nothing older than TLS 1.2.

The listener is probed with the `openssl s_client` CLI, one suite per
handshake; a refusal must be the server's handshake-failure (or
protocol-version) alert, so a client that never offered the suite cannot
pass for a refusing server. The dialer is probed by registering fake peer
nodes in Redis whose addresses are TLS servers that each allow one suite."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cluster_fixtures import NODE_KEY_PREFIX, REGISTRY_KEY, cluster_factory, redis_cmd, redis_factory  # noqa: F401
from sy_helpers import HOST, assert_still_serving, client_context, make_cert

ACCEPTED_TLS12 = ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
# Static RSA key exchange (no forward secrecy), CBC, and finite-field DHE.
REFUSED_TLS12 = ["AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                 "ECDHE-RSA-AES256-SHA384", "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-CHACHA20-POLY1305"]
TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]


def make_ec_cert(directory: Path) -> tuple[Path, Path]:
    """A P-256 (ECDSA) certificate, for the ECDHE-ECDSA suites."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ec-cert.pem", directory / "ec-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def s_client(port: int, *args: str) -> tuple[bool, str]:
    """One `openssl s_client` handshake; returns (handshake completed, output).
    @SECLEVEL=0 in the cipher strings lets the client offer what the
    system's OpenSSL policy would otherwise keep it from offering."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    return p.returncode == 0 and "Cipher is (NONE)" not in out, out


def negotiated_cipher(out: str) -> str:
    for line in out.splitlines():
        if "Cipher is " in line:
            return line.rsplit("Cipher is ", 1)[1].strip()
    return ""


@pytest.fixture
def rsa_server(spawn, tmp_path):
    cert, key = make_cert(tmp_path / "rsa")
    server = spawn("--tls-cert", str(cert), "--tls-key", str(key))
    server.cafile = cert
    return server


@pytest.fixture
def ec_server(spawn, tmp_path):
    cert, key = make_ec_cert(tmp_path / "ec")
    server = spawn("--tls-cert", str(cert), "--tls-key", str(key))
    server.cafile = cert
    return server


@pytest.mark.parametrize("cipher", ACCEPTED_TLS12)
def test_tls12_ecdhe_aead_suites_accepted(rsa_server, cipher):
    ok, out = s_client(rsa_server.port, "-tls1_2", "-cipher", cipher)
    assert ok, out
    assert negotiated_cipher(out) == cipher, out


@pytest.mark.parametrize("cipher", REFUSED_TLS12)
def test_tls12_static_rsa_cbc_and_dhe_suites_refused(rsa_server, cipher):
    ok, out = s_client(rsa_server.port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
    assert not ok, f"listener negotiated {negotiated_cipher(out)}:\n{out}"
    # The server's alert 40, not a client that had nothing to offer.
    assert "alert handshake failure" in out, out
    assert_still_serving(rsa_server.port, tls=client_context(cafile=rsa_server.cafile))


def test_tls12_prefers_ecdhe_aead_when_offered_everything(rsa_server):
    """A client offering every suite, weakest first, still gets an ECDHE AEAD suite."""
    ok, out = s_client(rsa_server.port, "-tls1_2", "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0:+ECDHE")
    assert ok, out
    assert negotiated_cipher(out) in ACCEPTED_TLS12, out


@pytest.mark.parametrize("cipher,accepted", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", True),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
    ("ECDHE-ECDSA-AES128-SHA", False),
    ("ECDHE-ECDSA-AES256-SHA384", False),
])
def test_tls12_with_ecdsa_certificate(ec_server, cipher, accepted):
    ok, out = s_client(ec_server.port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
    if accepted:
        assert ok and negotiated_cipher(out) == cipher, out
    else:
        assert not ok and "alert handshake failure" in out, out


@pytest.mark.parametrize("suite", TLS13_SUITES)
def test_tls13_default_suites_work(rsa_server, suite):
    ok, out = s_client(rsa_server.port, "-tls1_3", "-ciphersuites", suite)
    assert ok, out
    assert "TLSv1.3" in out and negotiated_cipher(out) == suite, out


@pytest.mark.parametrize("flag", ["-tls1_1", "-tls1"])
def test_tls11_and_tls10_refused(rsa_server, flag):
    ok, out = s_client(rsa_server.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert not ok, out
    # The server's protocol_version alert: the old ClientHello did go out.
    assert "alert protocol version" in out, out
    assert_still_serving(rsa_server.port, tls=client_context(cafile=rsa_server.cafile))


# --------------------------------------------------------------------------
# The peer-link dialer (client context) follows the same policy.
# --------------------------------------------------------------------------


class OneSuiteServer:
    """A TLS server on loopback that allows one TLS 1.2 suite (or TLS 1.3
    only) and records each handshake's outcome: the cipher, or the error."""

    def __init__(self, cert: Path, key: Path, cipher: str | None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if cipher is None:
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            self.ctx.set_ciphers(cipher + ":@SECLEVEL=0")
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.outcomes: list[str] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(3)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    self.outcomes.append(f"ok {s.version()} {s.cipher()[0]}")
            except (ssl.SSLError, OSError) as e:
                self.outcomes.append(f"error {e}")

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def test_peer_dialer_offers_only_ecdhe_aead_and_tls13(cluster_factory, tmp_path):
    cert, key = make_cert(tmp_path / "peer")
    cluster = cluster_factory(0)
    node = cluster.add(extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    cases = {c: True for c in ACCEPTED_TLS12} | {c: False for c in REFUSED_TLS12 if not c.startswith("DHE")}
    cases[None] = True  # TLS 1.3 only
    servers = {c: OneSuiteServer(cert, key, c) for c in cases}
    try:
        # Fake peers with ids above any real one: the node dials each of them.
        redis = cluster.redis.port
        for i, (cipher, server) in enumerate(servers.items()):
            fake = f"ffffffffffffffffffffffffffff{i:04x}"
            redis_cmd(redis, "SET", NODE_KEY_PREFIX + fake, f"{HOST}:{server.port}", "PX", "60000")
            redis_cmd(redis, "HSET", REGISTRY_KEY, fake, f"{HOST}:{server.port}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(s.outcomes for s in servers.values()):
            time.sleep(0.1)
        for cipher, server in servers.items():
            assert server.outcomes, f"node never dialed the {cipher} server\n{cluster.dump()}"
            first = server.outcomes[0]
            if cases[cipher]:
                want = "ok TLSv1.3" if cipher is None else f"ok TLSv1.2 {cipher}"
                assert first.startswith(want), f"{cipher}: {first}"
            else:
                assert first.startswith("error") and "NO_SHARED_CIPHER" in first, f"{cipher}: {first}"
        assert node.alive()
    finally:
        for s in servers.values():
            s.close()
