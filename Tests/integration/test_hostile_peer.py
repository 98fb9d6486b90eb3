"""Hostile clients on the cluster port (issue 10, point 7): raw TCP clients
that never prove COOKIE against one real clustered node (and one real Redis).

* an unauthenticated length prefix over 4 KiB closes the connection at once,
  and streaming data after it does not grow the node's memory;
* the accepting side sends nothing derived from COOKIE (no AUTH) until the
  dialer has proved itself; a dialer with the right COOKIE (computed here,
  as a check of the wire format) gets the acceptor's proof only after its own;
* wrong proofs are refused (REFUSE, close) and logged once per source
  address however often they come;
* node ids over 128 bytes or with control characters are refused and
  logged escaped; so is a reason a hostile acceptor sends back to a dialer;
* a COOKIE under 16 bytes is refused at start with how to make one.

Every test that reads log lines connects from its own loopback source
address (all of 127/8 is local), since failures are rate-limited per source."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import struct
import subprocess
import time

import msgpack
import pytest

import conftest
from cluster_fixtures import COOKIE, NODE_KEY_PREFIX, REGISTRY_KEY, Cluster, redis_server  # noqa: F401
from sy_helpers import make_cert, rss_kib, wait_for

VERSION = 3
HELLO, AUTH, REFUSE = 1, 2, 5
AUTH_FAILED = "peer authentication failed: wrong COOKIE?"
HANDSHAKE_FAILED = "peer handshake failed"


@pytest.fixture(scope="module")
def node(redis_server):
    c = Cluster(redis_server, first_host=40)
    try:
        n = c.add("H")
        yield n
    finally:
        c.close()
        print(c.dump(6000))
        c.release_files(keep=False)


_next_source = [10]


def source() -> str:
    """A fresh loopback source address for this test's raw clients."""
    _next_source[0] += 1
    return f"127.0.{_next_source[0]}.1"


def dial(n, src: str, timeout: float = 3.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((n.host, n.cluster_port))
    return s


def frame(ftype: int, body: dict | bytes, request_id: int = 0) -> bytes:
    raw = body if isinstance(body, bytes) else msgpack.packb(body)
    return struct.pack(">IBQ", 9 + len(raw), ftype, request_id) + raw


def hello(node_id: str, nonce: str, version: int = VERSION) -> bytes:
    return frame(HELLO, {"v": version, "node": node_id, "nonce": nonce})


def read_frames(s: socket.socket, until_closed: float = 2.0, want: int | None = None) -> tuple[list[tuple[int, dict]], bool]:
    """Frames the node sent until it closed (True) or `until_closed` passed
    or `want` frames came (False)."""
    data = b""
    frames: list[tuple[int, dict]] = []
    closed = False
    end = time.monotonic() + until_closed
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            length = struct.unpack(">I", data[:4])[0]
            ftype = data[4]
            body = data[13:4 + length]
            frames.append((ftype, msgpack.unpackb(body, raw=False) if body else {}))
            data = data[4 + length:]
        if want is not None and len(frames) >= want:
            break
    return frames, closed


def proof(cookie: str, role: str, sender_id: str, sender_nonce: str, receiver_id: str, receiver_nonce: str,
          binding: str = "") -> str:
    """PeerAuthentication.proof: HMAC-SHA256 over length-prefixed fields."""
    msg = b"singyeong-peer-v%d" % VERSION
    for field in (role, sender_id, sender_nonce, receiver_id, receiver_nonce, binding):
        raw = field.encode()
        msg += b"|%d:" % len(raw) + raw
    return hmac.new(cookie.encode(), msg, hashlib.sha256).hexdigest()



def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]



# ---------------------------------------------------------------- size limits


@pytest.mark.parametrize("length", [4097, 64 * 1024, 16 << 20, 1 << 30])
def test_oversized_length_prefix_before_auth_closes_at_once(node, length):
    """A length prefix over the 4 KiB handshake limit closes the connection
    as soon as the prefix is read (HANDSHAKE_TIMEOUT is 10 s), also for
    sizes the node accepts from an authenticated peer (16 MiB)."""
    with dial(node, source()) as s:
        t0 = time.monotonic()
        s.sendall(struct.pack(">I", length) + b"\x01" + b"\x00" * 8)
        frames, closed = read_frames(s, until_closed=3.0)
        assert closed and time.monotonic() - t0 < 1.0, f"length {length}: still open after {time.monotonic() - t0:.1f}s"
        assert all(t == REFUSE for t, _ in frames), frames
    assert node.alive()


def test_unauthenticated_data_does_not_grow_the_node(node):
    """Twenty connections each announce a 16 MiB frame and stream 2 MiB of
    it: without the limit the node would hold ~40 MiB for them."""
    before = rss_kib(node.proc.pid)
    src = source()
    socks = []
    for _ in range(20):
        s = dial(node, src)
        socks.append(s)
        try:
            s.sendall(struct.pack(">I", 16 << 20) + b"\x0a" + b"\x00" * 8)
            s.settimeout(2.0)
            s.sendall(b"x" * (2 << 20))
        except OSError:
            pass  # closed by the node, as it should
    time.sleep(0.5)
    grown = rss_kib(node.proc.pid) - before
    for s in socks:
        s.close()
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB for unauthenticated connections"
    assert node.alive()


# ---------------------------------------------------------------- proof order


def test_acceptor_sends_nothing_derived_from_cookie_before_the_dialer_proves(node):
    """After our HELLO the node answers with its HELLO only (version, node id,
    nonce), and keeps quiet while we do not prove COOKIE — until the peer
    handshake's deadline (2 ticks of 200 ms here) closes the connection."""
    with dial(node, source()) as s:
        t0 = time.monotonic()
        s.sendall(hello("f" * 32, os.urandom(32).hex()))
        frames, closed = read_frames(s, until_closed=1.5)
        waited = time.monotonic() - t0
        assert not closed or waited >= 0.35, f"closed {waited:.2f}s after a valid HELLO: {frames}"
        assert closed, "an unproved peer kept its connection past the handshake deadline (2 ticks)"
        assert [t for t, _ in frames] == [HELLO], frames
        body = frames[0][1]
        assert set(body) == {"v", "node", "nonce"} and body["v"] == VERSION and body["node"] == node.node_id
        assert re.fullmatch(r"[0-9a-f]{64}", body["nonce"]), body


def test_right_cookie_gets_the_acceptor_proof_only_after_its_own(node):
    """The whole v3 exchange from a raw client that knows COOKIE: HELLO,
    HELLO, our AUTH, then the node's AUTH (which checks out) and the link
    comes up (it is this test's proof that the wire format above is real)."""
    me, my_nonce = "e" * 32, os.urandom(32).hex()
    off = node.log_size()
    with dial(node, source()) as s:
        s.sendall(hello(me, my_nonce))
        (t, h), = read_frames(s, until_closed=2.0, want=1)[0]
        assert t == HELLO
        s.sendall(frame(AUTH, {"mac": proof(COOKIE, "dialer", me, my_nonce, node.node_id, h["nonce"])}))
        frames, _ = read_frames(s, until_closed=2.0, want=1)
        assert frames and frames[0][0] == AUTH, frames
        assert frames[0][1]["mac"] == proof(COOKIE, "acceptor", node.node_id, h["nonce"], me, my_nonce)
        assert wait_for(lambda: f"node={me}" in node.log_since(off) and "peer link up" in node.log_since(off))


def test_wrong_proofs_are_refused_and_logged_once_per_source(node):
    """Thirty wrong proofs from one address: each is refused (REFUSE
    code "proof", then close) without the node's proof; one log line."""
    src, off = source(), node.log_size()
    for i in range(30):
        with dial(node, src) as s:
            me, my_nonce = f"{i:032x}", os.urandom(32).hex()
            s.sendall(hello(me, my_nonce))
            (t, h), = read_frames(s, until_closed=2.0, want=1)[0]
            assert t == HELLO
            s.sendall(frame(AUTH, {"mac": proof("not-the-cluster-cookie", "dialer", me, my_nonce, node.node_id, h["nonce"])}))
            frames, closed = read_frames(s, until_closed=2.0)
            assert closed and [t for t, _ in frames] == [REFUSE], frames
            assert frames[0][1]["code"] == "proof"
    # A few malformed attempts from the same source count in the same window.
    for bad in (frame(HELLO, b"\xc1"), frame(AUTH, {"mac": "00"}), struct.pack(">I", 1 << 20)):
        with dial(node, src) as s:
            s.sendall(bad)
            assert read_frames(s, until_closed=2.0)[1]
    time.sleep(0.3)
    log = node.log_since(off)
    mine = [line for line in log.splitlines() if f"source={src}" in line]
    assert len(mine) == 1 and AUTH_FAILED in mine[0], "\n".join(mine)
    assert node.alive()


def test_failed_tls_handshakes_are_logged_once_per_source(redis_server, tmp_path):
    """With TLS on the cluster port, garbage instead of a ClientHello fails
    the TLS handshake: twenty attempts from one address, one log line."""
    make_cert(tmp_path)
    c = Cluster(redis_server, first_host=60)
    try:
        n = c.add("T", extra=("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")))
        src, off = source(), n.log_size()
        for _ in range(20):
            with dial(n, src) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\x00" * 64)
                assert read_frames(s, until_closed=2.0)[1]
        time.sleep(0.3)
        mine = [line for line in n.log_since(off).splitlines() if src in line]
        assert len(mine) == 1 and "TLS handshake failed" in mine[0] and HANDSHAKE_FAILED in mine[0], "\n".join(mine)
        assert n.alive()
    finally:
        c.close()
        c.release_files(keep=False)


# ---------------------------------------------------------------- peer strings


@pytest.mark.parametrize("node_id,logged,raw", [
    ("evil\nINJECTED fake log line", "evil\\nINJECTED fake log line", "\nINJECTED"),
    ("esc\x1b[31mred", "esc\\u{1B}[31mred", "\x1b"),
    ("x" * 300, "…(300 bytes)", "x" * 200),
])
def test_bad_node_ids_are_refused_and_logged_escaped(node, node_id, logged, raw):
    src, off = source(), node.log_size()
    with dial(node, src) as s:
        s.sendall(hello(node_id, os.urandom(32).hex()))
        frames, closed = read_frames(s, until_closed=2.0)
        assert closed and [t for t, _ in frames] == [REFUSE], frames
        assert frames[0][1]["code"] == "node-id"
    assert wait_for(lambda: f"source={src}" in node.log_since(off))
    line, = [line for line in node.log_since(off).splitlines() if f"source={src}" in line]
    assert HANDSHAKE_FAILED in line and logged in line, line
    assert raw not in node.log_since(off)


def test_hostile_acceptor_reason_is_logged_escaped(node, redis_server):
    """A registry entry pointing at a hostile listener: the node dials it,
    checks its HELLO, proves itself, and logs the REFUSE reason it gets
    back escaped."""
    fake_id = "f" * 32  # larger than any real id: the node dials it
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(5)
    port = lsock.getsockname()[1]
    off = node.log_size()
    redis_server.cmd("SET", NODE_KEY_PREFIX + fake_id, "1", "PX", "30000")
    redis_server.cmd("HSET", REGISTRY_KEY, fake_id, f"127.0.0.1:{port}")
    try:
        conn, _ = lsock.accept()
        with conn:
            (t, h), = read_frames(conn, until_closed=3.0, want=1)[0]
            assert t == HELLO and h["node"] == node.node_id
            conn.sendall(hello(fake_id, os.urandom(32).hex()))
            (t, auth), = read_frames(conn, until_closed=3.0, want=1)[0]
            assert t == AUTH  # the dialer proves first
            conn.sendall(frame(REFUSE, {"code": "proof", "reason": "no\nINJECTED line \x1b[2J"}))
            read_frames(conn, until_closed=2.0)
    finally:
        lsock.close()
        redis_server.cmd("HDEL", REGISTRY_KEY, fake_id)
        redis_server.cmd("DEL", NODE_KEY_PREFIX + fake_id)
    assert wait_for(lambda: AUTH_FAILED in node.log_since(off))
    line, = lines_with(node.log_since(off), AUTH_FAILED)
    assert "no\\nINJECTED line \\u{1B}[2J" in line and f"node={fake_id}" in line, line
    assert "\nINJECTED" not in node.log_since(off) and "\x1b" not in node.log_since(off)


# ---------------------------------------------------------------- COOKIE length


@pytest.mark.parametrize("cookie", ["c", "s3cret", "0123456789abcde"])
def test_short_cookie_is_refused_at_start(cookie):
    conftest.require_binary()
    r = subprocess.run([str(conftest.SINGYEONG_BIN), "--clustering", "true", "--cookie", cookie, "--port", "0"],
                       env=conftest.clean_env(), capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"COOKIE is {len(cookie)} bytes; at least 16" in r.stderr and "openssl rand -hex 32" in r.stderr, r.stderr
